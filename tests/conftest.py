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


@pytest.fixture(scope="session")
def data_home(tmp_path_factory):
    """The bundled samples (mnist_tiny, mnist_sample, pets, planet_tiny) extracted offline, once per
    session, into a fresh DEFTLY_HOME: {'tiny': path, 'sample': ..., 'pets': ..., 'planet': ...}."""
    from deftly.datasets import URLs, untar_data

    home = tmp_path_factory.mktemp("deftly_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEFTLY_HOME", str(home))
        mp.setenv("DEFTLY_OFFLINE", "1")
        return {name: untar_data(url, show_progress=False)
                for name, url in (("tiny", URLs.MNIST_TINY), ("sample", URLs.MNIST_SAMPLE),
                                  ("pets", URLs.PETS), ("planet", URLs.PLANET_TINY))}


@pytest.fixture(scope="session")
def tiny(data_home):
    return data_home["tiny"]


@pytest.fixture(scope="session")
def sample(data_home):
    return data_home["sample"]


@pytest.fixture(scope="session")
def planet(data_home):
    return data_home["planet"]


@pytest.fixture
def one_thread():
    """One torch thread for the test (the suite runs serially on 2 cores), restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def close_figures():
    """Close every matplotlib figure the test opened."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")
