"""The image samples bundled in deftly/datasets/samples/: layout, contents, checksums, reproducibility."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import re
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deftly.core.errors import DataError
from deftly.datasets import bundled
from deftly.datasets.bundled import BUNDLED_SHA256, bundled_archive, bundled_name

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "deftly" / "datasets" / "samples"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
PETS_RE = re.compile(r"/([^/]+)_\d+.jpg$")  # lesson 1's pattern, unchanged

FASTAI = "https://s3.amazonaws.com/fast-ai-"
MNIST_TINY_URL = f"{FASTAI}sample/mnist_tiny"
MNIST_SAMPLE_URL = f"{FASTAI}sample/mnist_sample"
PETS_URL = f"{FASTAI}imageclas/oxford-iiit-pet"


def _load_builder():
    spec = importlib.util.spec_from_file_location("build_samples", REPO / "scripts" / "build_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read(name: str) -> tuple[dict[str, bytes], set[str], list[tarfile.TarInfo]]:
    """Files (name -> bytes), folders, and all members of a bundled archive."""
    files, dirs = {}, set()
    with tarfile.open(SAMPLES / name, "r:gz") as tar:
        members = tar.getmembers()
        for m in members:
            if m.isdir():
                dirs.add(m.name)
            else:
                assert m.isfile(), f"{name}: {m.name} is not a plain file"
                files[m.name] = tar.extractfile(m).read()
    return files, dirs, members


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _png(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    img.load()
    return img


def _check_digits(files: dict[str, bytes], top: str, split: str) -> Counter:
    counts = Counter()
    for name, data in files.items():
        parts = name.split("/")
        if parts[1] != split:
            continue
        assert len(parts) == 4 and parts[2] in ("3", "7") and re.fullmatch(r"\d+\.png", parts[3]), name
        img = _png(data)
        assert (img.mode, img.size) == ("L", (28, 28)), name
        assert np.asarray(img).max() > 100  # a real digit, not a blank image
        counts[parts[2]] += 1
    return counts


def _labels(files: dict[str, bytes], top: str) -> dict[str, str]:
    rows = list(csv.DictReader(io.StringIO(files[f"{top}/labels.csv"].decode())))
    assert rows and list(rows[0]) == ["name", "label"]
    return {r["name"]: r["label"] for r in rows}


def test_archives_are_small_and_match_recorded_checksums():
    total = 0
    for name, digest in BUNDLED_SHA256.items():
        path = SAMPLES / name
        assert path.is_file(), name
        assert _sha(path) == digest, name
        total += path.stat().st_size
    assert total < 3_000_000


@pytest.mark.parametrize("name", sorted(BUNDLED_SHA256))
def test_archives_are_reproducible_and_safe(name):
    top = name[: -len(".tgz")]
    with open(SAMPLES / name, "rb") as f:
        head = f.read(10)
    assert head[:2] == b"\x1f\x8b" and head[4:8] == b"\0\0\0\0"  # gzip, mtime 0
    _, _, members = _read(name)
    names = [m.name for m in members]
    assert names == sorted(names)
    for m in members:
        assert m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" and m.gname == ""
        assert m.name == top or m.name.startswith(f"{top}/"), m.name
        assert ".." not in m.name.split("/") and not m.name.startswith("/")


def test_mnist_tiny_layout():
    files, dirs, _ = _read("mnist_tiny.tgz")
    assert {"mnist_tiny", "mnist_tiny/models", "mnist_tiny/train", "mnist_tiny/valid", "mnist_tiny/test"} <= dirs
    assert not any(f.startswith("mnist_tiny/models/") for f in files)  # empty, as in fastai's
    train = _check_digits(files, "mnist_tiny", "train")
    valid = _check_digits(files, "mnist_tiny", "valid")
    assert sum(train.values()) == 709 and min(train.values()) > 300
    assert sum(valid.values()) == 392 and min(valid.values()) > 150
    test = [f for f in files if f.startswith("mnist_tiny/test/")]
    assert len(test) == 20
    for f in test:
        assert re.fullmatch(r"mnist_tiny/test/\d+\.png", f)
        img = _png(files[f])
        assert (img.mode, img.size) == ("L", (28, 28))
    labels = _labels(files, "mnist_tiny")
    listed = {f[len("mnist_tiny/"):] for f in files if f.split("/")[1] in ("train", "valid")}
    assert set(labels) == listed
    assert all(label == name.split("/")[1] for name, label in labels.items())
    # train, valid and test are distinct digits; names are indices into the 10,000-digit sample
    idx = [int(Path(f).stem) for f in files if f.endswith(".png")]
    assert len(idx) == len(set(idx)) == 709 + 392 + 20 and max(idx) < 10000


def test_mnist_sample_layout_and_pixels_match_the_mnist_sample():
    from deftly.datasets import load_mnist_sample

    files, dirs, _ = _read("mnist_sample.tgz")
    assert {"mnist_sample/train", "mnist_sample/valid"} <= dirs
    assert set(f.split("/")[1] for f in files) == {"train", "valid", "labels.csv"}
    train = _check_digits(files, "mnist_sample", "train")
    valid = _check_digits(files, "mnist_sample", "valid")
    (xt, yt), (xv, yv) = load_mnist_sample(flatten=False)
    assert train == {"3": int((yt == 3).sum()), "7": int((yt == 7).sum())}
    assert valid == {"3": int((yv == 3).sum()), "7": int((yv == 7).sum())}
    labels = _labels(files, "mnist_sample")
    assert set(labels) == {f[len("mnist_sample/"):] for f in files if f.endswith(".png")}
    assert all(label == ("1" if name.split("/")[1] == "7" else "0") for name, label in labels.items())
    # every PNG is exactly the digit at that index of the sample, in the right split
    x = np.rint(np.concatenate([xt.numpy(), xv.numpy()]) * 255).astype(np.uint8)
    y = np.concatenate([yt.numpy(), yv.numpy()])
    for name, data in files.items():
        if not name.endswith(".png"):
            continue
        _, split, digit, fname = name.split("/")
        i = int(fname[:-4])
        assert (split == "train") == (i < len(yt)), name
        assert int(y[i]) == int(digit), name
        assert np.array_equal(np.asarray(_png(data)), x[i]), name


def test_pets_sample_layout_and_lesson1_regex():
    files, dirs, _ = _read("oxford-iiit-pet.tgz")
    assert {"oxford-iiit-pet/images", "oxford-iiit-pet/annotations"} <= dirs
    readme = files["oxford-iiit-pet/annotations/README"]
    assert b"not included" in readme and b"Zalando" in readme and b"MIT licence" in readme
    images = [f for f in files if f.startswith("oxford-iiit-pet/images/")]
    assert len(images) == 1000
    classes = Counter()
    for f in images:
        m = PETS_RE.search(f)
        assert m, f
        classes[m.group(1)] += 1
        img = Image.open(io.BytesIO(files[f]))
        assert img.format == "JPEG" and (img.mode, img.size) == ("RGB", (28, 28)), f
        arr = np.asarray(img).astype(int)
        assert np.abs(arr[..., 0] - arr[..., 1]).max() <= 3 and np.abs(arr[..., 0] - arr[..., 2]).max() <= 3
    assert len(classes) == 10 and set(classes.values()) == {100}
    initials = {c[0] for c in classes}
    assert any(i.isupper() for i in initials) and any(i.islower() for i in initials)
    assert {"Tshirt", "ankle_boot"} <= set(classes)


def test_bundled_archive_maps_urls():
    assert bundled_archive(MNIST_TINY_URL) == SAMPLES / "mnist_tiny.tgz"
    assert bundled_archive(MNIST_SAMPLE_URL + ".tgz") == SAMPLES / "mnist_sample.tgz"
    assert bundled_archive(PETS_URL) == SAMPLES / "oxford-iiit-pet.tgz"
    assert bundled_archive(PETS_URL + "/") == SAMPLES / "oxford-iiit-pet.tgz"
    assert bundled_name("mnist_tiny") == "mnist_tiny.tgz"
    for url in (f"{FASTAI}imageclas/imagenette", f"{FASTAI}sample/mnist_tiny_x", "https://x/y/mnist", ""):
        assert bundled_archive(url) is None, url


def test_bundled_archive_rejects_a_corrupt_archive(monkeypatch):
    monkeypatch.setattr(bundled, "_verified", set())
    monkeypatch.setitem(BUNDLED_SHA256, "mnist_tiny.tgz", "0" * 64)
    with pytest.raises(DataError, match="corrupt"):
        bundled_archive(MNIST_TINY_URL)


def test_builder_rebuilds_identical_mnist_archives(tmp_path):
    builder = _load_builder()
    builder.main(["--only", "mnist", "--out", str(tmp_path)])
    for name in ("mnist_tiny.tgz", "mnist_sample.tgz"):
        assert _sha(tmp_path / name) == BUNDLED_SHA256[name], name


@pytest.mark.skipif(
    not FASHION_DIR.is_dir(),
    reason=f"{FASHION_DIR} missing: install the Debian package dataset-fashion-mnist to rebuild the pets sample",
)
def test_builder_rebuilds_identical_pets_archive(tmp_path):
    builder = _load_builder()
    builder.main(["--only", "pets", "--out", str(tmp_path)])
    assert _sha(tmp_path / "oxford-iiit-pet.tgz") == BUNDLED_SHA256["oxford-iiit-pet.tgz"]
