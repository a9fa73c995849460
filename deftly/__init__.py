"""deftly: the fast.ai v1 course API, rebuilt on plain PyTorch."""

__version__ = "0.1.0"
