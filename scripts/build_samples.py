"""Build the image-folder samples bundled in ``deftly/datasets/samples/``.

    python scripts/build_samples.py                    # all three, into deftly/datasets/samples/
    python scripts/build_samples.py --only mnist --out /tmp/x

* ``mnist_tiny.tgz`` and ``mnist_sample.tgz``: the 3s and 7s of the bundled MNIST sample
  (``deftly.datasets.load_mnist_sample``, real MNIST digits) in fastai's folder layouts.
* ``oxford-iiit-pet.tgz``: a Pets-shaped sample made of real Fashion-MNIST images, read from the
  Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/``).

The archives are byte-reproducible: members sorted by name, mtime 0, uid/gid 0 with empty user
and group names, fixed modes, and a gzip header with mtime 0 and no file name. PNGs are written
by Pillow with ``optimize=True``; Pillow and zlib versions decide their exact bytes.
See ``deftly/datasets/samples/SAMPLES.md`` for what each archive holds.
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SAMPLES_DIR = REPO / "deftly" / "datasets" / "samples"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

#: Sizes of fastai's mnist_tiny: 709 training digits and 20 unlabelled test digits.
TINY_N_TRAIN = 709
TINY_N_TEST = 20
N_SAMPLE_TRAIN = 8000  # load_mnist_sample's default split: first 8,000 train, last 2,000 valid

#: Fashion-MNIST label -> Pets-style class name. Pets capitalises cat breeds and writes dog
#: breeds in lower case; these mix the two the same way so `from_name_re` sees both.
FASHION_CLASSES = (
    "Tshirt", "Trouser", "Pullover", "Dress", "Coat",
    "sandal", "shirt", "sneaker", "bag", "ankle_boot",
)
PETS_PER_CLASS = 100
PETS_ANNOTATIONS_README = """\
Annotations (trimaps, bounding boxes, list.txt) are not included in this small sample.

The images in ../images are not Oxford-IIIT Pets: they are 1,000 real Fashion-MNIST images
(https://github.com/zalandoresearch/fashion-mnist), taken from the Debian package
dataset-fashion-mnist and renamed Pets-style (<Class_name>_<n>.jpg), bundled by deftly.
Fashion-MNIST is under the MIT licence:

Copyright (c) 2017 Zalando SE, https://tech.zalando.com

Permission is hereby granted, free of charge, to any person obtaining a copy of this software
and associated documentation files (the "Software"), to deal in the Software without
restriction, including without limitation the rights to use, copy, modify, merge, publish,
distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the
Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING
BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""


# ---------------------------------------------------------------------------------------------
# Reproducible archive writing


def png_bytes(image: np.ndarray, mode: str) -> bytes:
    """Encode a uint8 (28, 28) array as a PNG: mode 'L' (grayscale) or 'RGB' (three equal channels)."""
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"expected a 2-d uint8 image, got {image.dtype} {image.shape}")
    if mode == "RGB":
        img = Image.fromarray(np.repeat(image[:, :, None], 3, axis=2), mode="RGB")
    elif mode == "L":
        img = Image.fromarray(image, mode="L")
    else:
        raise ValueError(f"mode must be 'L' or 'RGB', got {mode!r}")
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def jpg_bytes(image: np.ndarray) -> bytes:
    """Encode a uint8 (28, 28) array as an RGB JPEG (quality 95, no chroma subsampling), as Pets ships JPEGs."""
    img = Image.fromarray(np.repeat(image[:, :, None], 3, axis=2), mode="RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95, subsampling=0)
    return buf.getvalue()


def write_tgz(path: Path, files: dict[str, bytes], dirs: set[str] | None = None) -> Path:
    """Write a .tgz holding `files` (archive name -> bytes) and the folders they need, byte-reproducibly.

    Every parent folder gets its own entry, as do the (possibly empty) folders in `dirs`.
    """
    all_dirs: set[str] = set(dirs or ())
    for name in list(files) + list(all_dirs):
        parts = name.split("/")
        for i in range(1, len(parts)):
            all_dirs.add("/".join(parts[:i]))
    clash = all_dirs & set(files)
    if clash:
        raise ValueError(f"names used both as folder and file: {sorted(clash)[:3]}")

    def info(name: str, is_dir: bool, size: int = 0) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
        ti.mode = 0o755 if is_dir else 0o644
        ti.size = size
        ti.mtime = 0
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        return ti

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(all_dirs | set(files)):
            if name in files:
                data = files[name]
                tar.addfile(info(name, False, len(data)), io.BytesIO(data))
            else:
                tar.addfile(info(name, True))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, compresslevel=9, mtime=0) as gz:
        gz.write(raw.getvalue())
    return path


# ---------------------------------------------------------------------------------------------
# MNIST 3s and 7s


def mnist_sample_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 bundled MNIST digits as uint8 (n, 28, 28) and their labels, in the sample's order."""
    from deftly.datasets import load_mnist_sample

    (x_train, y_train), (x_valid, y_valid) = load_mnist_sample(n_valid=10000 - N_SAMPLE_TRAIN, flatten=False)
    x = np.concatenate([x_train.numpy(), x_valid.numpy()])
    y = np.concatenate([y_train.numpy(), y_valid.numpy()])
    images = np.rint(x * 255).astype(np.uint8)
    return images, y


def _three_seven_indices(labels: np.ndarray) -> tuple[list[int], list[int]]:
    """Indices (in sample order) of the 3s and 7s in the training part and in the validation part."""
    idx = [int(i) for i in np.flatnonzero((labels == 3) | (labels == 7))]
    return [i for i in idx if i < N_SAMPLE_TRAIN], [i for i in idx if i >= N_SAMPLE_TRAIN]


def _labelled_digits(top: str, splits: dict[str, list[int]], images: np.ndarray, labels: np.ndarray,
                     label_of) -> tuple[dict[str, bytes], list[str]]:
    """PNG files `<top>/<split>/<digit>/<i>.png` and the labels.csv rows (`label_of(digit)`) for them."""
    files: dict[str, bytes] = {}
    rows = ["name,label"]
    for split, idx in splits.items():
        for i in idx:
            digit = int(labels[i])
            name = f"{split}/{digit}/{i}.png"
            files[f"{top}/{name}"] = png_bytes(images[i], "L")
            rows.append(f"{name},{label_of(digit)}")
    return files, rows


def build_mnist_sample(out_dir: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """mnist_sample/: every 3 and 7 of the sample; labels.csv labels are 0 for 3 and 1 for 7, as in fastai's."""
    train, valid = _three_seven_indices(labels)
    files, rows = _labelled_digits("mnist_sample", {"train": train, "valid": valid}, images, labels,
                                   lambda digit: int(digit == 7))
    files["mnist_sample/labels.csv"] = ("\n".join(rows) + "\n").encode()
    return write_tgz(out_dir / "mnist_sample.tgz", files)


def build_mnist_tiny(out_dir: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """mnist_tiny/: the first 709 training 3s/7s, all validation 3s/7s, the next 20 training ones as test/."""
    train_all, valid = _three_seven_indices(labels)
    train = train_all[:TINY_N_TRAIN]
    test = train_all[TINY_N_TRAIN:TINY_N_TRAIN + TINY_N_TEST]
    files, rows = _labelled_digits("mnist_tiny", {"train": train, "valid": valid}, images, labels, lambda digit: digit)
    for i in test:
        files[f"mnist_tiny/test/{i}.png"] = png_bytes(images[i], "L")
    files["mnist_tiny/labels.csv"] = ("\n".join(rows) + "\n").encode()
    return write_tgz(out_dir / "mnist_tiny.tgz", files, dirs={"mnist_tiny/models"})


# ---------------------------------------------------------------------------------------------
# Pets-shaped Fashion-MNIST


def build_pets(out_dir: Path, fashion_dir: Path = FASHION_DIR) -> Path:
    """oxford-iiit-pet/images/<Class>_<n>.jpg: the first 100 of each class of Fashion-MNIST's train set."""
    from deftly.datasets.mnist import read_idx

    images = read_idx(fashion_dir / "train-images-idx3-ubyte.gz")
    labels = read_idx(fashion_dir / "train-labels-idx1-ubyte.gz")
    if images.shape[1:] != (28, 28) or labels.shape != (len(images),):
        raise ValueError(f"unexpected Fashion-MNIST shapes: {images.shape}, {labels.shape}")
    files: dict[str, bytes] = {}
    for cls, name in enumerate(FASHION_CLASSES):
        idx = np.flatnonzero(labels == cls)[:PETS_PER_CLASS]
        if len(idx) < PETS_PER_CLASS:
            raise ValueError(f"Fashion-MNIST class {cls} has only {len(idx)} images")
        for n, i in enumerate(idx, start=1):
            files[f"oxford-iiit-pet/images/{name}_{n}.jpg"] = jpg_bytes(images[i])
    files["oxford-iiit-pet/annotations/README"] = PETS_ANNOTATIONS_README.encode()
    return write_tgz(out_dir / "oxford-iiit-pet.tgz", files)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=SAMPLES_DIR, help="folder for the archives")
    p.add_argument("--only", choices=["all", "mnist", "pets"], default="all")
    p.add_argument("--fashion-dir", type=Path, default=FASHION_DIR)
    args = p.parse_args(argv)
    built = []
    if args.only in ("all", "mnist"):
        images, labels = mnist_sample_arrays()
        built += [build_mnist_tiny(args.out, images, labels), build_mnist_sample(args.out, images, labels)]
    if args.only in ("all", "pets"):
        built.append(build_pets(args.out, args.fashion_dir))
    import hashlib

    for path in built:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        print(f"{path}  {path.stat().st_size:,} bytes  sha256 {digest}")


if __name__ == "__main__":
    main()
