"""Small datasets bundled with deftly, so lessons and tests run without a download."""

from deftly.datasets.mnist import load_mnist, load_mnist_sample, read_idx

__all__ = ["load_mnist", "load_mnist_sample", "read_idx"]
