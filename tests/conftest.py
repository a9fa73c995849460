"""Shared, generic fixtures. Keep this file small: test-specific helpers live in their test files."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def mnist_sample():
    """The bundled real MNIST sample: ((x_train, y_train), (x_valid, y_valid)), x float (n, 784).

    Shared by the whole session; tests must not modify the tensors in place (slice, then clone).
    """
    from deftly.datasets import load_mnist_sample

    return load_mnist_sample()
