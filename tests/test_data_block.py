"""The data block API (deftly.data: ItemList, ItemLists, LabelList, LabelLists, DataBunch.from_label_lists)
on the real bundled image samples, the way the course chains it:

    ImageList.from_folder(path).split_by_folder().label_from_folder().add_test_folder()
             .transform(tfms, size=28).databunch(bs=16)

Every dataset comes from `untar_data` (offline, bundled real MNIST / Fashion-MNIST); bad inputs are
files derived from those real images.
"""
from __future__ import annotations

import contextlib
import shutil
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import PIL.Image  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from deftly.vision import *  # noqa: E402,F401,F403  (user code is written this way)
from deftly.vision import (  # noqa: E402  (the names used below, for linters)
    Category, ConfigError, DataBunch, DataError, DatasetType, DeviceDataLoader,
    EmptyLabelList, FloatList, Image, ImageFileList, ImageItemList, ImageList, ItemList, ItemLists, LabelList,
    LabelLists, collate_skipping, get_image_files, get_transforms,
)

# --------------------------------------------------------------------------------------- fixtures

#: file counts of the bundled mnist_tiny (see deftly/datasets/samples/SAMPLES.md)
TINY = {"train/3": 360, "train/7": 349, "valid/3": 204, "valid/7": 188, "test": 20}


pytestmark = pytest.mark.usefixtures("one_thread", "close_figures")


def copy_subset(src: Path, dst: Path, n: int, splits=("train", "valid"), classes=("3", "7")) -> Path:
    """The first `n` real digits (sorted names) of each split/class folder of mnist_tiny, copied."""
    for split in splits:
        for c in classes:
            (dst / split / c).mkdir(parents=True, exist_ok=True)
            for f in sorted((src / split / c).iterdir())[:n]:
                shutil.copy(f, dst / split / c / f.name)
    return dst


def digit_pixels(file: Path) -> np.ndarray:
    with PIL.Image.open(file) as im:
        return np.array(im.convert("L"))


@contextlib.contextmanager
def no_warnings():
    """A context in which any UserWarning fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        yield


# ------------------------------------------------------------------------------------- item lists


def test_v1_names_are_one_class():
    assert ImageItemList is ImageList and ImageFileList is ImageList
    assert issubclass(ImageList, ItemList)


def test_from_folder_recurse_include_extensions(tiny):
    il = ImageList.from_folder(tiny)
    assert len(il) == sum(TINY.values())
    assert all(isinstance(o, Path) and o.suffix == ".png" for o in il.items)
    assert il.path == tiny
    # sorted: within each folder by name, folders in order
    rel = [o.relative_to(tiny).parts[0] for o in il.items]
    assert rel == sorted(rel) and set(rel) == {"train", "valid", "test"}
    assert len(ImageList.from_folder(tiny, include=["train"])) == TINY["train/3"] + TINY["train/7"]
    assert len(ImageList.from_folder(tiny, include=["test", "valid"])) == TINY["test"] + 204 + 188
    assert len(ImageList.from_folder(tiny, recurse=False)) == 0  # only labels.csv sits in the root
    assert len(ImageList.from_folder(tiny / "test", recurse=False)) == TINY["test"]
    csvs = ItemList.from_folder(tiny, extensions=[".csv"])
    assert [o.name for o in csvs.items] == ["labels.csv"]
    assert len(ImageList.from_folder(tiny, extensions=[".PNG"])) == sum(TINY.values())  # case-insensitive
    with pytest.raises(DataError, match="not a folder"):
        ImageList.from_folder(tiny / "nowhere")


def test_indexing_opens_images_and_items_stay_raw(tiny):
    il = ImageList.from_folder(tiny / "train")
    assert isinstance(il.items[0], Path)
    img = il[0]
    assert isinstance(img, Image) and img.shape == (3, 28, 28)
    expected = torch.from_numpy(digit_pixels(il.items[0])).float() / 255
    assert torch.allclose(img.data[0], expected) and torch.equal(img.data[0], img.data[2])
    sub = il[[0, 2, 4]]
    assert isinstance(sub, ImageList) and list(sub.items) == [il.items[0], il.items[2], il.items[4]]
    assert len(il[:7]) == 7 and len(il[np.arange(len(il)) < 3]) == 3
    with pytest.raises(IndexError):
        il[len(il)]
    assert "ImageList (709 items)" in repr(il) and "Image (3, 28, 28)" in repr(il)


def test_convert_mode_L_gives_one_channel_everywhere(tiny):
    il = ImageList.from_folder(tiny, convert_mode="L")
    assert il[0].shape == (1, 28, 28)
    assert torch.allclose(il[0].data[0], torch.from_numpy(digit_pixels(il.items[0])).float() / 255)
    data = (il.split_by_folder().label_from_folder().add_test_folder()
            .transform(size=28).databunch(bs=4, num_workers=0))
    for ds_type in (DatasetType.Train, DatasetType.Valid, DatasetType.Test):
        x, _ = data.one_batch(ds_type)
        assert x.shape == (4, 1, 28, 28)


# ---------------------------------------------------------------------------------------- splits


def test_split_by_folder_label_from_folder_reprs_and_indexing(tiny):
    ll = ImageList.from_folder(tiny).split_by_folder().label_from_folder()
    assert isinstance(ll, LabelLists) and isinstance(ll.train, LabelList)
    assert len(ll.train) == 709 and len(ll.valid) == 392 and ll.test is None
    text = repr(ll)
    assert "Train: LabelList (709 items)" in text and "Valid: LabelList (392 items)" in text
    assert "x: ImageList" in text and "y: CategoryList" in text and "Test: None" in text
    x, y = ll.train[0]
    assert isinstance(x, Image) and isinstance(y, Category)
    assert y.obj == ll.train.x.items[0].parent.name and int(y.data) == ll.train.classes.index(y.obj)
    assert ll.train.classes == ["3", "7"] and ll.valid.classes == ["3", "7"] and ll.train.c == 2
    # every label is the parent folder, in both splits
    for part in (ll.train, ll.valid):
        names = [o.parent.name for o in part.x.items]
        assert [part.y.classes[c] for c in part.y.codes] == names
    last = ll.valid.y[len(ll.valid) - 1]
    assert isinstance(last, Category) and last.obj == "7"
    assert ll.train[-1][1].obj == "7"
    assert set(o.relative_to(tiny).parts[0] for o in ll.valid.x.items) == {"valid"}
    with pytest.raises(DataError, match="training"):
        ImageList.from_folder(tiny).split_by_folder(train="training", valid="testing")


def test_split_by_rand_pct_is_repeatable_with_a_seed(tiny):
    il = ImageList.from_folder(tiny / "train")
    a = il.split_by_rand_pct(0.2, seed=3)
    b = il.random_split_by_pct(0.2, seed=3)
    c = il.split_by_rand_pct(0.2, seed=4)
    assert isinstance(a, ItemLists)
    assert len(a.valid) == int(0.2 * 709) and len(a.train) == 709 - int(0.2 * 709)
    assert list(a.valid.items) == list(b.valid.items) and list(a.train.items) == list(b.train.items)
    assert list(a.valid.items) != list(c.valid.items)
    assert set(a.train.items).isdisjoint(a.valid.items)
    assert set(a.train.items) | set(a.valid.items) == set(il.items)
    # the course seeds numpy, then splits without a seed
    np.random.seed(42)
    d = il.random_split_by_pct(0.2)
    np.random.seed(42)
    e = il.random_split_by_pct(0.2)
    assert list(d.valid.items) == list(e.valid.items)
    assert len(il.split_by_rand_pct(0.0).valid) == 0
    with pytest.raises(ConfigError):
        il.split_by_rand_pct(1.0)


def test_split_by_idx_and_idxs(tiny):
    il = ImageList.from_folder(tiny / "train")
    s = il.split_by_idx(range(10))
    assert list(s.valid.items) == list(il.items[:10]) and list(s.train.items) == list(il.items[10:])
    s = il.split_by_idx(np.array([5, 700]))
    assert list(s.valid.items) == [il.items[5], il.items[700]] and len(s.train) == 707
    s = il.split_by_idxs([1, 2, 3], [0])
    assert list(s.train.items) == list(il.items[1:4]) and list(s.valid.items) == [il.items[0]]
    with pytest.raises(DataError, match="out of range"):
        il.split_by_idx([709])


def test_split_by_fname_file_and_split_by_files(tiny, tmp_path):
    valid_names = [o.name for o in sorted((tiny / "valid" / "7").iterdir())[:5]]
    (tmp_path / "valid.txt").write_text("\n".join(valid_names) + "\n\n")
    il = ImageList.from_folder(tiny, include=["valid"])
    s = il.split_by_fname_file("valid.txt", path=tmp_path)
    assert sorted(o.name for o in s.valid.items) == sorted(valid_names) and len(s.train) == 392 - 5
    # the course's relative form: path/'../valid.txt'
    (tmp_path / "sub").mkdir()
    il_sub = ImageList(il.items, path=tmp_path / "sub")
    s2 = il_sub.split_by_fname_file("../valid.txt")
    assert list(s2.valid.items) == list(s.valid.items)
    s3 = il.split_by_files(valid_names)
    assert list(s3.valid.items) == list(s.valid.items)
    with pytest.raises(DataError, match="missing.txt"):
        il.split_by_fname_file("missing.txt", path=tmp_path)


def test_split_by_valid_func_matches_split_by_folder(tiny):
    il = ImageList.from_folder(tiny, include=["train", "valid"])
    s = il.split_by_valid_func(lambda o: o.parent.parent.name == "valid")
    f = il.split_by_folder()
    assert list(s.valid.items) == list(f.valid.items) and list(s.train.items) == list(f.train.items)


def test_split_from_df_and_label_from_df(tiny):
    df = pd.read_csv(tiny / "labels.csv")
    df["is_valid"] = df["name"].str.startswith("valid")
    ll = ImageList.from_df(df, tiny).split_from_df("is_valid").label_from_df(cols="label")
    assert len(ll.train) == 709 and len(ll.valid) == 392
    assert ll.train.classes == [3, 7]  # the CSV's labels are ints
    for part in (ll.train, ll.valid):
        assert [part.y.classes[c] for c in part.y.codes] == [int(o.parent.name) for o in part.x.items]
    by_position = ImageList.from_df(df, tiny, cols="name").split_from_df(2)
    assert list(by_position.valid.items) == list(ll.valid.x.items)
    df["is_valid"] = df["is_valid"].astype(object)
    df.loc[3, "is_valid"] = "maybe"
    with pytest.raises(DataError, match="row 3"):
        ImageList.from_df(df, tiny).split_from_df("is_valid")
    with pytest.raises(ConfigError):
        ImageList.from_folder(tiny / "test").split_from_df()
    with pytest.raises(ConfigError):
        ImageList.from_folder(tiny / "test").split_none().label_from_df()


def test_split_none_and_no_split(tiny):
    il = ImageList.from_folder(tiny / "train")
    for s in (il.split_none(), il.no_split()):
        assert len(s.train) == 709 and len(s.valid) == 0
    data = il.no_split().label_from_folder().transform(size=28).databunch(bs=8, num_workers=0)
    assert data.valid_dl is None and data.valid_ds is None
    x, y = data.one_batch()
    assert x.shape == (8, 3, 28, 28)
    with pytest.raises(DataError, match="valid"):
        data.dl(DatasetType.Valid)


def test_explicit_item_lists(tiny):
    train = ImageList.from_folder(tiny / "train")
    valid = ImageList.from_folder(tiny / "valid")
    ll = ItemLists(tiny, train=train, valid=valid).label_from_folder()
    assert (len(ll.train), len(ll.valid)) == (709, 392) and ll.train.classes == ["3", "7"]
    assert "ItemLists" in repr(ItemLists(tiny, train=train, valid=valid))


# --------------------------------------------------------------------------------------- labels


def test_label_from_folder_with_classes_drops_the_others_quietly(tiny):
    with no_warnings():
        ll = ImageList.from_folder(tiny).split_by_folder().label_from_folder(classes=["7"])
    assert ll.train.classes == ["7"] and len(ll.train) == 349 and len(ll.valid) == 188
    assert all(o.parent.name == "7" for o in ll.train.x.items)
    assert {ll.valid.y[i].obj for i in range(len(ll.valid))} == {"7"}


def test_label_from_re_func_and_lists_agree_with_folders(tiny):
    s = ImageList.from_folder(tiny, include=["train", "valid"]).split_by_folder()
    by_folder = s.label_from_folder()
    by_re = s.label_from_re(r"/(\d)/\d+\.png$")
    by_func = s.label_from_func(lambda o: o.parent.name)
    by_lists = s.label_from_lists([o.parent.name for o in s.train.items], [o.parent.name for o in s.valid.items])
    for other in (by_re, by_func, by_lists):
        assert other.train.classes == ["3", "7"]
        assert list(other.train.y.codes) == list(by_folder.train.y.codes)
        assert list(other.valid.y.codes) == list(by_folder.valid.y.codes)
    with pytest.raises(DataError, match="3 train labels for 709"):
        s.label_from_lists(["3"] * 3, ["3"] * 392)


def test_label_from_re_without_a_match_names_the_item(tiny):
    s = ImageList.from_folder(tiny / "train").split_none()
    with pytest.raises(DataError, match=r"item 0 .*train/3/0\.png"):
        s.label_from_re(r"/(\d)/\d+\.jpg$")
    with pytest.raises(ConfigError, match="group"):
        s.label_from_re(r"/\d/\d+\.png$")


def test_label_const_and_float_labels(tiny):
    s = ImageList.from_folder(tiny / "test").split_by_idx([0, 1])
    ll = s.label_const("digit")
    assert ll.train.classes == ["digit"] and ll.train[0][1].obj == "digit" and len(ll.valid) == 2
    ll = s.label_from_func(lambda o: float(o.stem))
    assert isinstance(ll.train.y, FloatList)
    assert float(ll.valid.y[0].data) == float(s.valid.items[0].stem)
    data = ll.transform(size=28).databunch(bs=4, num_workers=0)
    _, y = data.one_batch(DatasetType.Valid)
    assert y.dtype == torch.float32 and torch.equal(y, torch.tensor([float(o.stem) for o in s.valid.items]))


def test_label_from_df_label_delim_gives_multi_category(planet):
    src = (ImageList.from_csv(planet, "labels.csv", folder="train", suffix=".jpg")
           .split_by_rand_pct(0.2, seed=0).label_from_df(label_delim=" "))
    df = pd.read_csv(planet / "labels.csv")
    tags = dict(zip(df["image_name"], df["tags"]))
    assert type(src.train.y).__name__ == "MultiCategoryList"
    classes = src.train.classes
    assert classes == sorted({t for s in df["tags"] for t in s.split()}) and src.train.c == len(classes) == 10
    for i in (0, 7, len(src.valid) - 1):
        x, y = src.valid[i]
        name = src.valid.x.items[i].stem
        assert sorted(y.obj) == sorted(tags[name].split())
        assert y.data.dtype == torch.float32 and y.data.shape == (10,)
        assert y.data.sum() == len(tags[name].split())
        assert [classes[j] for j in torch.nonzero(y.data).flatten()] == sorted(tags[name].split())
    # the course's older name for the delimiter
    old = (ImageList.from_csv(planet, "labels.csv", folder="train", suffix=".jpg")
           .split_by_rand_pct(0.2, seed=0).label_from_df(sep=" "))
    assert old.train.classes == classes


# -------------------------------------------------------------------------------------- filters


def test_filter_by_folder_and_filter_by_func(tiny):
    il = ImageList.from_folder(tiny)
    assert len(il.filter_by_folder(include=["train", "valid"])) == 709 + 392
    assert len(il.filter_by_folder(exclude=["test"])) == 709 + 392
    assert {o.relative_to(tiny).parts[0] for o in il.filter_by_folder(include=["test"]).items} == {"test"}
    threes = il.filter_by_func(lambda o: o.parent.name == "3")
    assert len(threes) == 360 + 204
    s = ImageList.from_folder(tiny, include=["train", "valid"]).split_by_folder()
    f = s.filter_by_func(lambda o: o.parent.name == "7")
    assert (len(f.train), len(f.valid)) == (349, 188)


# ------------------------------------------------------------------------------ from_df / from_csv


def test_from_csv_and_from_df_read_the_real_labels_file(tiny):
    il = ImageList.from_csv(tiny, "labels.csv")
    df = pd.read_csv(tiny / "labels.csv")
    assert len(il) == len(df) == 709 + 392
    assert all(o.is_file() for o in il.items)
    assert il.items[0] == tiny / df["name"][0]
    assert il.inner_df is not None and list(il.inner_df.columns) == ["name", "label"]
    il2 = ImageList.from_df(df, tiny, cols="name")
    assert list(il2.items) == list(il.items)
    ll = il.split_by_rand_pct(0.2, seed=1).label_from_df()
    assert ll.train.classes == [3, 7] and len(ll.valid) == int(0.2 * len(df))
    with pytest.raises(DataError, match="no column 'nope'"):
        ImageList.from_df(df, tiny, cols="nope")
    with pytest.raises(DataError, match="no such CSV file"):
        ImageList.from_csv(tiny, "missing.csv")


def test_csv_naming_missing_files_names_row_and_file(tiny, tmp_path):
    df = pd.read_csv(tiny / "labels.csv")
    df.loc[5, "name"] = "train/3/not_there.png"
    with pytest.raises(DataError, match=r"row 5: .*train/3/not_there\.png"):
        ImageList.from_df(df, tiny)
    df.to_csv(tmp_path / "labels.csv", index=False)
    shutil.copytree(tiny / "train", tmp_path / "train")
    shutil.copytree(tiny / "valid", tmp_path / "valid")
    with pytest.raises(DataError, match=r"row 5: .*not_there\.png.*labels\.csv"):
        ImageList.from_csv(tmp_path, "labels.csv")
    with pytest.raises(DataError, match=r"folder= and suffix="):
        ImageList.from_csv(tiny, "labels.csv", suffix=".jpg")


# --------------------------------------------------------------------------------- add_test


def test_add_test_folder_and_add_test(tiny):
    ll = (ImageList.from_folder(tiny).split_by_folder().label_from_folder()
          .transform(get_transforms(do_flip=False), size=20).add_test_folder())
    assert len(ll.test) == TINY["test"] and isinstance(ll.test.y, EmptyLabelList)
    assert "Test: LabelList (20 items)" in repr(ll)
    data = ll.databunch(bs=8, num_workers=0)
    assert len(data.test_ds) == 20 and len(data.test_dl) == 3  # 8 + 8 + 4, not dropped
    x, y = data.one_batch(DatasetType.Test)
    assert x.shape == (8, 3, 20, 20) and torch.equal(y, torch.zeros(8, dtype=torch.long))
    # the test set takes the validation transforms: no augmentation, deterministic
    x2, _ = data.one_batch(DatasetType.Test)
    assert torch.equal(x, x2)
    # add_test with a list of files, keeping the item type's settings
    files = get_image_files(tiny / "test")[:5]
    ll2 = ImageList.from_folder(tiny, convert_mode="L").split_by_folder().label_from_folder().add_test(files)
    assert list(ll2.test.x.items) == files and ll2.test.x[0].shape == (1, 28, 28)
    ll3 = ImageList.from_folder(tiny).split_by_folder().label_from_folder().add_test(files, label="7")
    assert ll3.test.y[0].obj == "7"
    with pytest.raises(DataError, match="no such folder"):
        ll.add_test_folder("nope")


# -------------------------------------------------------------------------------- transform


def test_transform_sizes_and_resize_methods(tiny, tmp_path):
    # real digits, inverted so that their borders are white: padding shows
    src = sorted((tiny / "valid" / "3").iterdir())[:4]
    (tmp_path / "valid" / "3").mkdir(parents=True)
    (tmp_path / "train" / "3").mkdir(parents=True)
    for f in src:
        inv = PIL.Image.fromarray(255 - digit_pixels(f))
        inv.save(tmp_path / "valid" / "3" / f.name)
        inv.save(tmp_path / "train" / "3" / f.name)
    ll = ImageList.from_folder(tmp_path).split_by_folder().label_from_folder()

    def valid_batch(**kwargs):
        return ll.transform(None, **kwargs).databunch(bs=4, num_workers=0).one_batch(DatasetType.Valid)[0]

    assert valid_batch(size=16).shape == (4, 3, 16, 16)
    crop = valid_batch(size=(16, 24))
    assert crop.shape == (4, 3, 16, 24)
    squish = valid_batch(size=(16, 24), resize_method="squish")
    with PIL.Image.open(ll.valid.x.items[0]) as im:
        ref = np.array(im.convert("RGB").resize((24, 16), PIL.Image.BILINEAR))
    assert torch.allclose(squish[0] * 255, torch.from_numpy(ref).permute(2, 0, 1).float(), atol=0.51)
    assert not torch.allclose(squish, crop)
    zeros = valid_batch(size=(16, 24), resize_method="pad", padding_mode="zeros")
    assert zeros.shape == (4, 3, 16, 24)
    assert zeros[..., :4].abs().max() == 0 and zeros[..., -4:].abs().max() == 0  # 16x16 content centred
    assert zeros[..., 4:-4].mean() > 0.5  # the white-background digit itself
    reflect = valid_batch(size=(16, 24), resize_method="pad", padding_mode="reflection")
    assert reflect[..., :4].mean() > 0.5
    assert torch.equal(reflect[..., 4:-4], zeros[..., 4:-4])


def test_transform_argument_errors(tiny):
    ll = ImageList.from_folder(tiny / "test").split_by_idx([0]).label_const(0)
    with pytest.raises(ConfigError, match="foo"):
        ll.transform(get_transforms(), size=28, foo=1)
    with pytest.raises(ConfigError, match="sz"):
        ll.transform(get_transforms(), sz=28)
    with pytest.raises(ConfigError, match="pair"):
        ll.transform(get_transforms()[0], size=28)
    with pytest.raises(ConfigError):
        ll.transform(None, size=28, resize_method="stretch")
    with pytest.raises(ConfigError):
        ll.transform(None, size=28, padding_mode="wrap")


# --------------------------------------------------------------------------------- databunch


def test_databunch_loaders_and_batches(tiny):
    ll = ImageList.from_folder(tiny).split_by_folder().label_from_folder().transform(None, size=28)
    data = ll.databunch(bs=32, val_bs=64, num_workers=0)
    assert type(data).__name__ == "ImageDataBunch" and isinstance(data, DataBunch)
    assert data.classes == ["3", "7"] and data.c == 2 and data.path == tiny
    assert isinstance(data.train_dl, DeviceDataLoader) and data.train_dl.batch_size == 32
    assert len(data.train_dl) == 709 // 32  # the last partial batch is dropped when training
    assert len(data.valid_dl) == -(-392 // 64) and data.valid_dl.batch_size == 64
    assert data.train_ds is ll.train and data.valid_ds is ll.valid
    assert data.train_ds.x.items[0] == ll.train.x.items[0]
    assert data.valid_ds.y[0].obj == "3" and isinstance(data.valid_ds.y[0], Category)
    x, y = data.one_batch(DatasetType.Valid)
    assert x.shape == (64, 3, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.long
    assert 0 <= x.min() and x.max() <= 1
    first = data.valid_ds[0][0].data
    assert torch.allclose(x[0], first)  # no shuffling in validation, no augmentation
    assert torch.equal(y, torch.tensor(list(ll.valid.y.codes[:64])))
    seen = sum(len(xb) for xb, _ in data.valid_dl)
    assert seen == 392
    assert "train: 709 items" in repr(data) and "valid: 392 items" in repr(data)
    with pytest.raises(DataError, match="no test set"):
        data.dl(DatasetType.Test)


def test_device_data_loader_new_and_batch_transforms(tiny):
    data = (ImageList.from_folder(tiny, include=["valid"]).split_by_idx(range(8)).label_from_folder()
            .transform(None, size=28).databunch(bs=4, num_workers=0))
    dl = data.valid_dl
    assert len(dl) == 2 and dl.num_workers == 0 and dl.dataset is data.valid_ds
    one = dl.new(batch_size=1, shuffle=False)
    assert len(one) == 8 and one.dataset is dl.dataset
    xs = [xb for xb, _ in one]
    assert all(x.shape == (1, 3, 28, 28) for x in xs)

    def double(batch):
        x, y = batch
        return x * 2, y

    before, _ = next(iter(dl))
    data.add_tfm(double)
    after, _ = next(iter(dl))
    assert torch.allclose(after, before * 2)
    data.remove_tfm(double)
    again, _ = next(iter(dl))
    assert torch.allclose(again, before)


def test_from_label_lists_directly(tiny):
    ll = ImageList.from_folder(tiny, include=["valid"]).split_by_idx(range(10)).label_from_folder()
    ll = ll.transform(None, size=28)
    data = DataBunch.from_label_lists(ll, bs=5, num_workers=0)
    assert len(data.valid_dl) == 2 and len(data.train_ds) == 382
    with pytest.raises(DataError, match="bs"):
        DataBunch.from_label_lists(ll, bs=0, num_workers=0)


def test_collate_skipping():
    a = (torch.zeros(3, 4, 4, dtype=torch.uint8), torch.tensor(0))
    b = (torch.ones(3, 4, 4, dtype=torch.uint8), torch.tensor(1))
    x, y = collate_skipping([a, None, b])
    assert x.shape == (2, 3, 4, 4) and y.tolist() == [0, 1]
    with pytest.raises(DataError, match="none of the 2 items"):
        collate_skipping([None, None])
    c = (torch.ones(3, 5, 4, dtype=torch.uint8), torch.tensor(1))
    with pytest.raises(DataError, match="size="):
        collate_skipping([a, c])


# ----------------------------------------------------------------------------------- summary


def test_summary_names_each_step(tiny):
    ll = (ImageList.from_folder(tiny).split_by_folder().label_from_folder()
          .transform(get_transforms(do_flip=False), size=24))
    text = ll.summary()
    assert repr(text) == str(text)  # shows as text, not a quoted string
    for expected in ("Train: 709 items; Valid: 392 items", "x: ImageList", "y: CategoryList", "classes (2)",
                     "item:", "open x:", "label:", "item transforms:", "collate 2 copies:",
                     "batch transform", "tensor (2, 3, 24, 24) float32", "every step works."):
        assert expected in text, expected
    assert "0.png" in text


def test_summary_reports_a_corrupt_first_item(tiny, tmp_path):
    root = copy_subset(tiny, tmp_path / "data", 3)
    good = sorted((root / "train" / "3").iterdir())[0].read_bytes()
    (root / "train" / "3" / "-cut.png").write_bytes(good[: len(good) // 2])  # sorts first
    ll = ImageList.from_folder(root).split_by_folder().label_from_folder().transform(None, size=28)
    assert ll.train.x.items[0].name == "-cut.png"
    text = ll.summary()
    assert "open x: FAILED with DataError" in text and "-cut.png" in text
    assert "every step works." not in text and "fix the step that failed" in text
    assert "every step works." in ll.summary(1)


# ------------------------------------------------------------------------------- bad inputs


def make_corrupt_folder(tiny: Path, root: Path) -> dict[str, Path]:
    """Six real digits per class and split, plus a truncated, an empty and a text file posing as
    images, named to sort into the middle of their folders."""
    copy_subset(tiny, root, 6)
    threes, sevens = sorted((root / "valid" / "3").iterdir()), sorted((root / "valid" / "7").iterdir())
    good = sevens[2].read_bytes()
    # '<stem>_x.png' sorts right after '<stem>.png' (all stems are 4-digit numbers)
    bad = {"truncated": root / "valid" / "7" / f"{sevens[2].stem}_cut.png",
           "empty": root / "valid" / "3" / f"{threes[1].stem}_empty.png",
           "text": root / "valid" / "3" / f"{threes[3].stem}_note.jpg"}
    bad["truncated"].write_bytes(good[: len(good) // 2])
    bad["empty"].write_bytes(b"")
    bad["text"].write_text("this is a text file, not a picture")
    return bad


def test_corrupt_files_are_skipped_with_a_warning(tiny, tmp_path):
    bad = make_corrupt_folder(tiny, tmp_path / "data")
    ll = ImageList.from_folder(tmp_path / "data").split_by_folder().label_from_folder().transform(None, size=28)
    assert len(ll.valid) == 12 + 3
    positions = [list(ll.valid.x.items).index(f) for f in bad.values()]
    assert all(0 < p < len(ll.valid) - 1 for p in positions)  # deep in the list, not first or last
    data = ll.databunch(bs=4, num_workers=0)
    with pytest.warns(UserWarning) as record:
        sizes = [len(xb) for xb, _ in data.valid_dl]
    assert sum(sizes) == 12 and len(sizes) == 4 and min(sizes) < 4  # an epoch, smaller batches
    messages = " ".join(str(w.message) for w in record)
    for f in bad.values():
        assert f.name in messages
    # the training loader too: one batch holding everything readable
    data = ll.databunch(bs=16, num_workers=0)
    with no_warnings():
        x, y = next(iter(data.train_dl))
    assert x.shape == (12, 3, 28, 28)


def test_a_batch_of_only_unreadable_files_is_a_data_error(tiny, tmp_path):
    bad = make_corrupt_folder(tiny, tmp_path / "data")
    files = [bad["empty"], bad["text"]]
    ll = ImageList(files, path=tmp_path).split_none().label_const("3").transform(None, size=28)
    data = ll.databunch(bs=2, num_workers=0)
    with pytest.warns(UserWarning), pytest.raises(DataError, match="none of the 2 items"):
        next(iter(data.train_dl))


def test_empty_class_folder_is_absent_not_fatal(tiny, tmp_path):
    root = copy_subset(tiny, tmp_path / "data", 4)
    (root / "train" / "5").mkdir()
    (root / "valid" / "5").mkdir()
    ll = ImageList.from_folder(root).split_by_folder().label_from_folder()
    assert ll.train.classes == ["3", "7"] and len(ll.train) == 8
    data = ll.transform(None, size=28).databunch(bs=4, num_workers=0)
    assert data.c == 2 and data.one_batch()[0].shape == (4, 3, 28, 28)


def test_validation_label_unseen_in_training_is_removed_with_a_warning(tiny, tmp_path):
    root = copy_subset(tiny, tmp_path / "data", 4)
    (root / "valid" / "9").mkdir()
    odd = root / "valid" / "9" / "odd.png"
    shutil.copy(sorted((tiny / "valid" / "7").iterdir())[10], odd)
    with pytest.warns(UserWarning, match=r"1 validation item.*odd\.png"):
        ll = ImageList.from_folder(root).split_by_folder().label_from_folder()
    assert len(ll.valid) == 8 and odd not in list(ll.valid.x.items)
    assert ll.valid.classes == ["3", "7"]


def test_items_of_different_sizes_need_size(tiny, tmp_path):
    root = copy_subset(tiny, tmp_path / "data", 3)
    for f in (root / "train" / "7").iterdir():
        with PIL.Image.open(f) as im:
            im.resize((40, 32)).save(f)  # real digits, stretched
    ll = ImageList.from_folder(root).split_by_folder().label_from_folder()
    data = ll.transform(None).databunch(bs=6, num_workers=0)
    with pytest.raises(DataError, match="size="):
        data.one_batch()
    data = ll.transform(None, size=28).databunch(bs=6, num_workers=0)
    assert data.one_batch()[0].shape == (6, 3, 28, 28)


def test_transform_returns_a_new_object_so_progressive_resizing_keeps_the_first_bunch(planet):
    """Lesson 3 builds one `src`, then `src.transform(tfms, size=128)` and later
    `src.transform(tfms, size=256)`; the module docstring promises each step returns a new object."""
    src = (ImageList.from_csv(planet, "labels.csv", folder="train", suffix=".jpg")
           .split_by_rand_pct(0.2, seed=0).label_from_df(label_delim=" "))
    small = src.transform(None, size=16).databunch(bs=4, num_workers=0)
    big = src.transform(None, size=32).databunch(bs=4, num_workers=0)
    assert big.one_batch()[0].shape == (4, 3, 32, 32)
    assert small.one_batch()[0].shape == (4, 3, 16, 16)


def test_indexing_x_after_transform_still_opens_the_whole_file(planet):
    """`data.train_ds.x[i]` is the image as stored (v1), not the size the loader decodes for speed."""
    src = (ImageList.from_csv(planet, "labels.csv", folder="train", suffix=".jpg")
           .split_by_rand_pct(0.2, seed=0).label_from_df(label_delim=" "))
    assert src.train.x[0].shape == (3, 64, 64)
    data = src.transform(None, size=16).databunch(bs=4, num_workers=0)
    assert data.train_ds.x[0].shape == (3, 64, 64)
    assert data.train_ds[0][0].shape == (3, 16, 16)  # the LabelList gives the transformed item
