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
from deftly.datasets.download import untar_data
from deftly.datasets.urls import URLs

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "deftly" / "datasets" / "samples"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
PETS_RE = re.compile(r"/([^/]+)_\d+.jpg$")  # lesson 1's pattern, unchanged

FASTAI = "https://s3.amazonaws.com/fast-ai-"
MNIST_TINY_URL = f"{FASTAI}sample/mnist_tiny"
MNIST_SAMPLE_URL = f"{FASTAI}sample/mnist_sample"
PETS_URL = f"{FASTAI}imageclas/oxford-iiit-pet"
PLANET_TINY_URL = "http://files.fast.ai/data/examples/planet_tiny"

#: planet_tiny's tags: Fashion-MNIST's classes, in label order.
PLANET_TAGS = ("t_shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot")
PLANET_N = 1200
needs_fashion = pytest.mark.skipif(
    not FASHION_DIR.is_dir(),
    reason=f"{FASHION_DIR} missing: install the Debian package dataset-fashion-mnist",
)


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
    assert total < 10_000_000  # all bundled samples together stay under 10 MB


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
    assert len(images) == 5000
    classes = Counter()
    for f in images:
        m = PETS_RE.search(f)
        assert m, f
        classes[m.group(1)] += 1
        img = Image.open(io.BytesIO(files[f]))
        assert img.format == "JPEG" and (img.mode, img.size) == ("RGB", (28, 28)), f
        arr = np.asarray(img).astype(int)
        assert np.abs(arr[..., 0] - arr[..., 1]).max() <= 3 and np.abs(arr[..., 0] - arr[..., 2]).max() <= 3
    assert len(classes) == 10 and set(classes.values()) == {500}
    initials = {c[0] for c in classes}
    assert any(i.isupper() for i in initials) and any(i.islower() for i in initials)
    assert {"Tshirt", "ankle_boot"} <= set(classes)


def test_bundled_archive_maps_urls():
    assert bundled_archive(MNIST_TINY_URL) == SAMPLES / "mnist_tiny.tgz"
    assert bundled_archive(MNIST_SAMPLE_URL + ".tgz") == SAMPLES / "mnist_sample.tgz"
    assert bundled_archive(PETS_URL) == SAMPLES / "oxford-iiit-pet.tgz"
    assert bundled_archive(PETS_URL + "/") == SAMPLES / "oxford-iiit-pet.tgz"
    assert bundled_archive(PLANET_TINY_URL) == SAMPLES / "planet_tiny.tgz"
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


@needs_fashion
def test_builder_rebuilds_identical_pets_archive(tmp_path):
    builder = _load_builder()
    builder.main(["--only", "pets", "--out", str(tmp_path)])
    assert _sha(tmp_path / "oxford-iiit-pet.tgz") == BUNDLED_SHA256["oxford-iiit-pet.tgz"]


# ---------------------------------------------------------------------------------------------
# planet_tiny: multi-label mosaics of real Fashion-MNIST items


def _planet() -> tuple[dict[str, bytes], set[str], list[dict[str, str]], list[dict[str, str]]]:
    """Files, folders, labels.csv rows and SOURCES.csv rows of planet_tiny.tgz."""
    files, dirs, _ = _read("planet_tiny.tgz")
    labels = list(csv.DictReader(io.StringIO(files["planet_tiny/labels.csv"].decode())))
    sources = list(csv.DictReader(io.StringIO(files["planet_tiny/SOURCES.csv"].decode())))
    return files, dirs, labels, sources


def _mosaic(data: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    assert img.format == "JPEG" and (img.mode, img.size) == ("RGB", (64, 64))
    arr = np.asarray(img).astype(int)
    assert np.abs(arr[..., 0] - arr[..., 1]).max() <= 3 and np.abs(arr[..., 0] - arr[..., 2]).max() <= 3
    return arr[..., 0]


def test_untar_data_planet_tiny_offline(tmp_path, monkeypatch):
    from deftly.datasets import URLs, untar_data

    assert URLs.PLANET_TINY == PLANET_TINY_URL
    monkeypatch.setenv("DEFTLY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DEFTLY_OFFLINE", "1")
    path = untar_data(URLs.PLANET_TINY, show_progress=False)
    assert path == tmp_path / "home" / "data" / "planet_tiny"
    assert sorted(p.name for p in path.ls()) == ["README", "SOURCES.csv", "labels.csv", "train"]
    assert not (tmp_path / "home" / "archive").exists()  # nothing was downloaded
    # lesson 3 reads labels.csv with folder='train', suffix='.jpg' and label_delim=' '
    with open(path / "labels.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image_name", "tags"] and len(rows) == PLANET_N + 1
    for name, tags in rows[1:]:
        assert (path / "train" / f"{name}.jpg").is_file(), name
        assert tags.split(" ") and set(tags.split(" ")) <= set(PLANET_TAGS), (name, tags)


def test_planet_tiny_layout_and_labels():
    files, dirs, labels, _ = _planet()
    assert dirs == {"planet_tiny", "planet_tiny/train"}
    assert set(files) - {f for f in files if f.startswith("planet_tiny/train/")} == {
        "planet_tiny/labels.csv", "planet_tiny/SOURCES.csv", "planet_tiny/README"}
    readme = files["planet_tiny/README"]
    assert b"not the Planet" in readme and b"Zalando" in readme and b"MIT licence" in readme
    # labels.csv: exactly fastai's two columns, one row per image, nothing else in train/
    header = files["planet_tiny/labels.csv"].decode().split("\n", 1)[0]
    assert header == "image_name,tags"
    names = [r["image_name"] for r in labels]
    assert len(names) == len(set(names)) == PLANET_N
    assert {f"planet_tiny/train/{n}.jpg" for n in names} == {f for f in files if f.startswith("planet_tiny/train/")}
    assert all(re.fullmatch(r"train_\d+", n) for n in names)
    # tags: known classes, distinct, sorted, separated by single spaces
    counts, per_image = Counter(), Counter()
    for r in labels:
        tags = r["tags"].split(" ")
        assert all(tags) and set(tags) <= set(PLANET_TAGS), r
        assert tags == sorted(set(tags)), r
        counts.update(tags)
        per_image[len(tags)] += 1
    assert set(counts) == set(PLANET_TAGS)
    for tag, n in counts.items():  # every tag common: in 25% to 45% of the images
        assert 0.25 * PLANET_N <= n <= 0.45 * PLANET_N, (tag, n)
    assert set(per_image) == {1, 2, 3, 4}
    assert 20 <= per_image[1] <= 0.1 * PLANET_N  # a few single-tag images
    # the images themselves: 64x64 RGB JPEGs with three equal channels
    for name in names[:50]:
        _mosaic(files[f"planet_tiny/train/{name}.jpg"])


def test_planet_tiny_sources_match_tags_and_cells():
    files, _, labels, sources = _planet()
    assert list(sources[0]) == ["image_name", "cell", "y", "x", "fashion_mnist_split", "fashion_mnist_index", "tag"]
    tags = {r["image_name"]: set(r["tags"].split(" ")) for r in labels}
    cells: dict[str, dict[int, tuple[int, int]]] = {name: {} for name in tags}
    shown: dict[str, set[str]] = {name: set() for name in tags}
    indices = []
    for r in sources:
        name, cell, y, x = r["image_name"], int(r["cell"]), int(r["y"]), int(r["x"])
        assert r["fashion_mnist_split"] == "t10k" and r["tag"] in PLANET_TAGS, r
        assert 0 <= cell < 4 and cell not in cells[name], r
        row, col = divmod(cell, 2)  # the 28x28 item lies inside its 32x32 cell
        assert 32 * row <= y <= 32 * row + 4 and 32 * col <= x <= 32 * col + 4, r
        cells[name][cell] = (y, x)
        shown[name].add(r["tag"])
        indices.append(int(r["fashion_mnist_index"]))
    assert shown == tags  # an image's tags are exactly the classes of its filled cells
    assert len(indices) == len(set(indices)) and 0 <= min(indices) and max(indices) < 10000  # no item twice
    assert any(len(c) < 4 for c in cells.values()) and any(len(c) == 4 for c in cells.values())
    # blank cells are black; filled cells show an item
    for name, filled in list(cells.items())[::10]:
        img = _mosaic(files[f"planet_tiny/train/{name}.jpg"])
        for cell in range(4):
            row, col = divmod(cell, 2)
            region = img[32 * row:32 * row + 32, 32 * col:32 * col + 32]
            if cell in filled:
                assert region.max() > 100, (name, cell)
            else:
                assert region.max() <= 3, (name, cell)


@needs_fashion
def test_planet_tiny_cells_are_the_recorded_fashion_mnist_items():
    from deftly.datasets.mnist import read_idx

    items = read_idx(FASHION_DIR / "t10k-images-idx3-ubyte.gz").astype(np.float32)
    classes = read_idx(FASHION_DIR / "t10k-labels-idx1-ubyte.gz")
    files, _, _, sources = _planet()
    images: dict[str, np.ndarray] = {}
    patches, recorded = [], []
    for r in sources:
        name = r["image_name"]
        if name not in images:
            images[name] = _mosaic(files[f"planet_tiny/train/{name}.jpg"])
        y, x, i = int(r["y"]), int(r["x"]), int(r["fashion_mnist_index"])
        patch = images[name][y:y + 28, x:x + 28].astype(np.float32)
        assert PLANET_TAGS[int(classes[i])] == r["tag"], r
        assert np.abs(patch - items[i]).mean() < 4, r  # the item itself, up to JPEG's small changes
        patches.append(patch.ravel())
        recorded.append(i)
    # and no other Fashion-MNIST test item is closer: the nearest neighbour of every 4th patch
    p = np.stack(patches[::4])
    q = items.reshape(len(items), -1)
    dist = (p * p).sum(1)[:, None] - 2 * p @ q.T + (q * q).sum(1)[None, :]
    assert np.array_equal(dist.argmin(1), np.array(recorded[::4]))


@needs_fashion
def test_builder_rebuilds_identical_planet_archive(tmp_path):
    builder = _load_builder()
    builder.main(["--only", "planet", "--out", str(tmp_path)])
    assert _sha(tmp_path / "planet_tiny.tgz") == BUNDLED_SHA256["planet_tiny.tgz"]


def test_an_updated_bundled_sample_replaces_an_old_extraction_but_keeps_user_files(tmp_path, monkeypatch):
    monkeypatch.setenv("DEFTLY_HOME", str(tmp_path))
    monkeypatch.setenv("DEFTLY_OFFLINE", "1")
    path = untar_data(URLs.MNIST_TINY)
    marker = path / ".deftly-bundled"
    assert marker.read_text().strip() == BUNDLED_SHA256["mnist_tiny.tgz"]
    assert ".deftly-bundled" not in [p.name for p in path.ls()]
    victim = sorted((path / "train" / "3").iterdir())[0]
    victim.unlink()
    (path / "models").mkdir(exist_ok=True)
    (path / "models" / "mine.safetensors").write_bytes(b"user work")
    assert untar_data(URLs.MNIST_TINY) == path and not victim.exists()  # same archive: folder reused as is
    marker.write_text("0" * 64 + "\n")  # as if extracted from an older bundled archive
    with pytest.warns(UserWarning, match="has changed"):
        again = untar_data(URLs.MNIST_TINY)
    assert again == path and victim.exists()
    assert (path / "models" / "mine.safetensors").read_bytes() == b"user work"
    assert marker.read_text().strip() == BUNDLED_SHA256["mnist_tiny.tgz"]
