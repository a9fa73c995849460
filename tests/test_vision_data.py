"""ImageDataBunch (the course's factories, normalize/denorm, show_batch), image files of every mode,
multi-label data, and what a Learner does with image data: predict, pred_batch, TTA, show_results,
ClassificationInterpretation. All on the real bundled samples (`untar_data`, offline); bad or
unusual files are derived from those real images.

The learner-based tests use a tiny conv net of their own (not cnn_learner).
"""
from __future__ import annotations

import contextlib
import re
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
from torch import nn  # noqa: E402

from deftly.vision import *  # noqa: E402,F401,F403  (user code is written this way)
from deftly.vision import (  # noqa: E402  (the names used below, for linters)
    Category, ClassificationInterpretation, ConfigError, DataError, DatasetType, Image, ImageDataBunch,
    ImageList, Learner, get_image_files, get_transforms, imagenet_stats, mnist_stats, open_image, read_pil,
)
from deftly.train.losses import BCEWithLogitsFlat, CrossEntropyFlat, MSELossFlat  # noqa: E402

# --------------------------------------------------------------------------------------- fixtures


pytestmark = pytest.mark.usefixtures("one_thread", "close_figures")


def tiny_model(c: int = 2, ch: int = 3, seed: int = 0) -> nn.Module:
    """Two convolutions, a pool and a linear layer."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(ch, 8, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, c))


def digit_pixels(file: Path) -> np.ndarray:
    with PIL.Image.open(file) as im:
        return np.array(im.convert("L"))


def visible_titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


@contextlib.contextmanager
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        yield


TFMS = get_transforms(do_flip=False)


@pytest.fixture(scope="module")
def trained(tiny):
    """A tiny conv net trained for a few epochs on a quarter of mnist_tiny (3s and 7s), with the
    test folder added; data normalised with mnist_stats."""
    il = ImageList.from_folder(tiny, include=["train", "valid"])
    train = [i for i, f in enumerate(il.items) if f.parts[-3] == "train"][::4]
    valid = [i for i, f in enumerate(il.items) if f.parts[-3] == "valid"][::4]
    data = (il.split_by_idxs(train, valid).label_from_folder().add_test_folder()
            .transform(TFMS, size=28).databunch(bs=16, num_workers=0).normalize(mnist_stats))
    torch.manual_seed(0)
    learn = Learner(data, tiny_model(), progress=False)
    learn.fit_one_cycle(3, 5e-2)
    return learn


# -------------------------------------------------------------------------------- factories


def test_the_five_lesson1_scenarios_on_mnist_sample(sample):
    """F3:1214-1370: from_folder, from_csv, from_name_re, from_name_func, from_lists."""
    kw = dict(ds_tfms=TFMS, bs=8, num_workers=0, seed=0)
    data = ImageDataBunch.from_folder(sample, ds_tfms=TFMS, size=26, bs=8, num_workers=0)
    assert isinstance(data, ImageDataBunch) and data.classes == ["3", "7"] and data.c == 2
    assert (len(data.train_ds), len(data.valid_ds)) == (1710, 392)
    assert data.one_batch()[0].shape == (8, 3, 26, 26)

    df = pd.read_csv(sample / "labels.csv")
    by_csv = ImageDataBunch.from_csv(sample, size=28, **kw)
    assert by_csv.classes == [0, 1]  # "is it a 7": the CSV's own labels
    assert len(by_csv.valid_ds) == int(0.2 * len(df)) and len(by_csv.train_ds) + len(by_csv.valid_ds) == len(df)
    folder_of = {0: "3", 1: "7"}
    ys = by_csv.valid_ds.y
    assert all(folder_of[ys.classes[c]] == f.parent.name for c, f in zip(ys.codes, by_csv.valid_ds.x.items))
    assert by_csv.one_batch()[0].shape == (8, 3, 28, 28)

    fn_paths = [sample / name for name in df["name"]]
    by_re = ImageDataBunch.from_name_re(sample, fn_paths, pat=r"/(\d)/\d+\.png$", size=24, **kw)
    by_func = ImageDataBunch.from_name_func(sample, fn_paths, size=24,
                                            label_func=lambda x: "3" if "/3/" in str(x) else "7", **kw)
    labels = [("3" if "/3/" in str(x) else "7") for x in fn_paths]
    by_lists = ImageDataBunch.from_lists(sample, fn_paths, labels=labels, size=24, **kw)
    for d in (by_re, by_func, by_lists):
        assert d.classes == ["3", "7"]
        assert len(d.train_ds) == len(df) - int(0.2 * len(df))
        for part in (d.train_ds, d.valid_ds):
            assert [part.y.classes[c] for c in part.y.codes] == [f.parent.name for f in part.x.items]
        assert d.one_batch(DatasetType.Valid)[0].shape == (8, 3, 24, 24)
    # the same seed gives the same split whatever labels the items
    assert list(by_re.valid_ds.x.items) == list(by_lists.valid_ds.x.items)
    with pytest.raises(DataError, match="2 file names but 1 labels"):
        ImageDataBunch.from_lists(sample, fn_paths[:2], labels=["3"])


def test_from_name_re_on_pets_with_the_course_pattern(data_home):
    path_img = data_home["pets"] / "images"
    fnames = get_image_files(path_img)
    assert len(fnames) == 5000
    pat = r"/([^/]+)_\d+.jpg$"
    data = ImageDataBunch.from_name_re(path_img, fnames, pat, ds_tfms=get_transforms(), size=28, bs=8,
                                       num_workers=0, seed=2)
    assert data.classes == ["Coat", "Dress", "Pullover", "Trouser", "Tshirt",
                            "ankle_boot", "bag", "sandal", "shirt", "sneaker"]
    assert data.c == 10 and len(data.valid_ds) == 1000
    for part in (data.train_ds, data.valid_ds):
        assert [part.y.classes[c] for c in part.y.codes] == [f.stem.rsplit("_", 1)[0] for f in part.x.items]
    x, y = data.one_batch()
    assert x.shape == (8, 3, 28, 28) and y.dtype == torch.long and 0 <= int(y.min()) and int(y.max()) < 10


def test_from_folder_with_valid_pct_splits_the_train_folder(tiny):
    """v1: with valid_pct, the items are those of path/train (train='.' for all of path): a
    `test` folder next to it is not a class."""
    data = ImageDataBunch.from_folder(tiny, valid_pct=0.2, seed=0, size=28, bs=8, num_workers=0)
    assert data.classes == ["3", "7"]
    items = list(data.train_ds.x.items) + list(data.valid_ds.x.items)
    assert len(items) == 709 and all(f.relative_to(tiny).parts[0] == "train" for f in items)


def test_from_folder_options(tiny):
    data = ImageDataBunch.from_folder(tiny / "train", train=".", valid_pct=0.2, seed=0, size=28, bs=8,
                                      num_workers=0)
    assert data.classes == ["3", "7"] and len(data.train_ds) + len(data.valid_ds) == 709
    data = ImageDataBunch.from_folder(tiny, test="test", ds_tfms=TFMS, size=20, bs=8, num_workers=0)
    assert len(data.test_ds) == 20 and data.one_batch(DatasetType.Test)[0].shape == (8, 3, 20, 20)
    data = ImageDataBunch.from_folder(tiny, classes=["3"], size=28, bs=8, num_workers=0)
    assert data.classes == ["3"] and len(data.train_ds) == 360
    with pytest.raises(ConfigError, match="bsz"):
        ImageDataBunch.from_folder(tiny, size=28, bsz=8)


def test_from_df_and_from_csv_options(tiny):
    df = pd.read_csv(tiny / "labels.csv")
    data = ImageDataBunch.from_df(tiny, df, size=28, bs=8, num_workers=0, seed=0)
    assert data.classes == [3, 7] and len(data.valid_ds) == int(0.2 * len(df))
    stems = df.assign(stem=df["name"].str.replace(".png", "", regex=False))
    data = ImageDataBunch.from_df(tiny, stems[["stem", "label"]], suffix=".png", size=28, bs=8,
                                  num_workers=0, seed=0)
    assert all(f.is_file() for f in data.train_ds.x.items)
    data = ImageDataBunch.from_csv(tiny, csv_labels="labels.csv", valid_pct=0.1, size=28, bs=8, num_workers=0)
    assert len(data.valid_ds) == int(0.1 * len(df))


# ---------------------------------------------------------------------------- normalisation


@pytest.fixture
def plain(tiny):
    """mnist_tiny without augmentation: the validation batches are deterministic."""
    return (ImageList.from_folder(tiny).split_by_folder().label_from_folder()
            .transform(None, size=28).databunch(bs=64, num_workers=0))


def test_normalize_with_imagenet_stats_and_denorm(plain):
    x0, y0 = plain.one_batch(DatasetType.Valid)
    out = plain.normalize(imagenet_stats)
    assert out is plain
    assert [list(map(float, s)) for s in plain.stats] == [list(map(float, s)) for s in imagenet_stats]
    x1, y1 = plain.one_batch(DatasetType.Valid)
    mean = torch.tensor(imagenet_stats[0]).view(1, 3, 1, 1)
    std = torch.tensor(imagenet_stats[1]).view(1, 3, 1, 1)
    assert torch.allclose(x1, (x0 - mean) / std, atol=1e-6) and torch.equal(y0, y1)
    assert torch.allclose(plain.denorm(x1), x0, atol=1e-6)
    plain.normalize(imagenet_stats)  # again: replaces, does not normalise twice
    x2, _ = plain.one_batch(DatasetType.Valid)
    assert torch.allclose(x2, x1, atol=1e-6)
    # the test and train loaders are normalised too
    xt, _ = plain.one_batch(DatasetType.Train)
    assert xt.min() < 0


def test_normalize_works_in_place_only_after_the_images_own_steps(plain):
    """After the image pipeline's augment step (which always makes a new tensor) normalising in
    place saves a batch-sized allocation; after a user's dl_tfm it must not touch what it got."""
    plain.normalize(imagenet_stats)
    assert plain._norm_step.inplace
    x1, _ = plain.one_batch(DatasetType.Valid)
    seen = []

    def keep(batch):  # a user's step that hands on a tensor it also keeps
        seen.append(batch[0])
        return batch

    plain.remove_tfm(plain._norm_step)
    plain.add_tfm(keep)
    plain.normalize(imagenet_stats)
    assert not plain._norm_step.inplace
    x2, _ = plain.one_batch(DatasetType.Valid)
    assert torch.allclose(x1, x2) and seen[-1].min() >= 0  # the kept tensor is still un-normalised


def test_normalize_without_stats_uses_batch_stats(plain):
    raw_mean, raw_std = plain.batch_stats()
    assert len(raw_mean) == 3 and 0.05 < raw_mean[0] < 0.3 and 0.2 < raw_std[0] < 0.45  # MNIST digits
    plain.normalize()
    x, _ = plain.one_batch(DatasetType.Valid)
    mean, std = x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))
    assert mean.abs().max() < 0.15 and (std - 1).abs().max() < 0.15
    assert torch.allclose(plain.denorm(x).mean(dim=(0, 2, 3)), torch.tensor(raw_mean), atol=0.05)


def test_normalize_needs_stats_per_channel(tiny):
    data = (ImageList.from_folder(tiny, convert_mode="L").split_by_folder().label_from_folder()
            .transform(None, size=28).databunch(bs=8, num_workers=0))
    data.normalize()  # batch stats of one channel
    assert data.one_batch()[0].shape == (8, 1, 28, 28) and len(data.stats[0]) == 1
    data.normalize(imagenet_stats)
    with pytest.raises(DataError, match="3 channels"):
        data.one_batch()


# --------------------------------------------------------------------------------- show_batch


def test_show_batch_draws_a_grid_titled_with_labels(plain):
    plain.normalize(imagenet_stats)
    assert plain.show_batch(rows=2) is None
    fig = plain.show_batch(rows=2, ds_type=DatasetType.Valid, return_fig=True)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert visible_titles(fig) == [plain.valid_ds.y[i].obj for i in range(4)]
    fig = plain.show_batch(rows=3, return_fig=True, figsize=(4, 4))
    assert len(visible_titles(fig)) == 9 and set(visible_titles(fig)) <= {"3", "7"}
    # what is drawn is the de-normalised image, in [0, 1]
    shown = fig.axes[0].images[0].get_array()
    assert 0 <= shown.min() and shown.max() <= 1


# ------------------------------------------------------------------------ image files, any mode


@pytest.fixture
def digit_files(tiny, tmp_path):
    """One real digit written in every common mode and format."""
    src = sorted((tiny / "train" / "7").iterdir())[0]
    pixels = digit_pixels(src)
    im = PIL.Image.fromarray(pixels)
    folder = tmp_path / "modes" / "7"
    folder.mkdir(parents=True)
    files = {
        "grey.png": (im, {}), "grey.jpg": (im, {"quality": 95}),
        "cmyk.tif": (im.convert("CMYK"), {}), "cmyk.jpg": (im.convert("CMYK"), {"quality": 95}),
        "rgba.png": (im.convert("RGBA"), {}), "palette.png": (im.convert("P"), {}),
        "palette.gif": (im.convert("P"), {}), "grey_alpha.png": (im.convert("LA"), {}),
        "sixteen.png": (PIL.Image.fromarray(pixels.astype(np.uint16) * 257), {}),
    }
    for name, (image, kwargs) in files.items():
        image.save(folder / name, **kwargs)
    with PIL.Image.open(folder / "sixteen.png") as check:
        assert check.mode.startswith("I")  # really a 16-bit file
    return folder, pixels


def test_every_image_mode_opens_as_three_channels(digit_files):
    folder, pixels = digit_files
    expected = torch.from_numpy(pixels).float()
    lossless = {"grey.png", "cmyk.tif", "rgba.png", "palette.png", "palette.gif", "grey_alpha.png", "sixteen.png"}
    for f in sorted(folder.iterdir()):
        img = open_image(f)
        assert img.shape == (3, 28, 28), f.name
        err = (img.data * 255 - expected).abs()
        if f.name in lossless:
            assert err.max() <= 1.0, f.name
        else:
            assert err.mean() < 3 and err.max() < 40, f.name
        assert torch.allclose(img.data[0], img.data[1], atol=2 / 255) and torch.allclose(img.data[1], img.data[2], atol=2 / 255)
    sixteen = open_image(folder / "sixteen.png")
    saturated = (sixteen.data[0] >= 1.0).float().mean()
    assert saturated == (expected >= 255).float().mean()  # scaled, not clipped at 255
    assert read_pil(folder / "sixteen.png", "L").mode == "L"


def test_every_image_mode_goes_through_a_databunch(digit_files):
    folder, pixels = digit_files
    root = folder.parent
    ll = ImageList.from_folder(root).split_none().label_from_folder()
    assert len(ll.train) == 9
    with no_warnings():
        data = ll.transform(None, size=28).databunch(bs=9, num_workers=0)
        x, y = data.one_batch()
    assert x.shape == (9, 3, 28, 28) and torch.equal(y, torch.zeros(9, dtype=torch.long))
    expected = torch.from_numpy(pixels).float() / 255
    assert ((x[:, 0] - expected).abs().mean(dim=(1, 2)) < 3 / 255).all()


# ------------------------------------------------------------------------------- multi-label


def test_planet_multi_label_end_to_end(planet):
    data = ImageDataBunch.from_csv(planet, folder="train", suffix=".jpg", sep=" ", size=32, bs=8, num_workers=0,
                                   seed=0, ds_tfms=get_transforms(flip_vert=True, max_lighting=0.1,
                                                                  max_zoom=1.05, max_warp=0.0))
    data.normalize(imagenet_stats)
    assert type(data.train_ds.y).__name__ == "MultiCategoryList" and data.c == 10
    df = pd.read_csv(planet / "labels.csv")
    tags = dict(zip(df["image_name"], df["tags"]))
    x, y = data.one_batch(DatasetType.Valid)
    assert x.shape == (8, 3, 32, 32) and y.shape == (8, 10) and y.dtype == torch.float32
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    expected = [len(tags[f.stem].split()) for f in data.valid_ds.x.items[:8]]
    assert y.sum(dim=1).tolist() == expected
    fig = data.show_batch(rows=2, ds_type=DatasetType.Valid, return_fig=True)
    titles = visible_titles(fig)
    assert [sorted(t.split(";")) for t in titles] == [sorted(tags[f.stem].split()) for f in data.valid_ds.x.items[:4]]

    learn = Learner(data, tiny_model(c=data.c), progress=False)
    assert isinstance(learn.loss_func, BCEWithLogitsFlat)
    learn.fit(1, 1e-2)
    img, target = data.valid_ds[0]
    label, pred, probs = learn.predict(img)
    assert type(label).__name__ == "MultiCategory" and probs.shape == (10,)
    assert ((0 <= probs) & (probs <= 1)).all()
    assert torch.equal(pred, (probs >= 0.5).float())
    assert label.obj == [data.classes[i] for i in torch.nonzero(pred).flatten().tolist()]
    low, pred_low, _ = learn.predict(img, thresh=0.0)
    assert pred_low.sum() == 10 and len(low.obj) == 10
    fig = learn.show_results(rows=2, return_fig=True)
    assert isinstance(fig, matplotlib.figure.Figure) and len(visible_titles(fig)) == 4


def test_default_loss_follows_the_labels(tiny):
    s = ImageList.from_folder(tiny / "valid").split_by_idx(range(8))
    cat = s.label_from_folder().transform(None, size=28).databunch(bs=4, num_workers=0)
    flt = s.label_from_func(lambda f: float(f.stem)).transform(None, size=28).databunch(bs=4, num_workers=0)
    assert isinstance(Learner(cat, tiny_model(), progress=False).loss_func, CrossEntropyFlat)
    assert isinstance(Learner(flt, tiny_model(c=1), progress=False).loss_func, MSELossFlat)


# ----------------------------------------------------------------------- learner: predictions


def test_predict_gives_category_index_and_probabilities(trained, tiny):
    data = trained.data
    img = open_image(sorted((tiny / "test").iterdir())[0])
    cat, idx, probs = trained.predict(img)
    assert isinstance(cat, Category) and cat.obj == data.classes[int(idx)]
    assert idx.dtype == torch.long and idx.ndim == 0
    assert probs.shape == (2,) and torch.isclose(probs.sum(), torch.tensor(1.0)) and int(probs.argmax()) == int(idx)
    again = trained.predict(img)
    assert torch.equal(again[2], probs)
    # the same numbers as the validation pass for a validation item
    preds, targs = trained.get_preds()
    assert preds.shape == (len(data.valid_ds), 2) and torch.allclose(preds.sum(1), torch.ones(len(preds)))
    for i in (0, len(data.valid_ds) - 1):
        assert torch.allclose(trained.predict(data.valid_ds.x[i])[2], preds[i], atol=1e-5)
    # a file name and a PIL image work as items too
    assert torch.allclose(trained.predict(PIL.Image.open(data.valid_ds.x.items[0]))[2], preds[0], atol=1e-5)


def test_predict_is_deterministic_for_an_image_that_needs_cropping(trained, tiny):
    """predict prepares an item like the validation set (centre crop, no augmentation), so the same
    picture always gets the same answer."""
    a, b = sorted((tiny / "test").iterdir())[:2]
    wide = Image(torch.cat([open_image(a).data, open_image(b).data], dim=2))  # two real digits, 28x56
    probs = [trained.predict(wide)[2] for _ in range(6)]
    assert all(torch.equal(p, probs[0]) for p in probs)
    xb, _ = trained.data.one_item(wide)
    centre = wide.data[:, :, 14:42]
    expected = (centre - 0.15) / 0.15  # mnist_stats, the validation crop
    assert torch.allclose(xb[0], expected, atol=1e-5)


def test_single_from_classes_predicts_like_the_trained_learner(trained, tiny):
    trained.save("tiny-stage")
    data2 = ImageDataBunch.single_from_classes(tiny, ["3", "7"], ds_tfms=TFMS, size=28).normalize(mnist_stats)
    assert data2.classes == ["3", "7"] and data2.c == 2 and len(data2.train_ds) == 0
    learn2 = Learner(data2, tiny_model(seed=1), progress=False)
    learn2.load("tiny-stage")
    img = open_image(sorted((tiny / "test").iterdir())[3])
    cat, idx, probs = learn2.predict(img)
    expected = trained.predict(img)
    assert isinstance(cat, Category) and cat.obj == expected[0].obj and int(idx) == int(expected[1])
    assert torch.allclose(probs, expected[2], atol=1e-5)
    assert all(torch.equal(learn2.predict(img)[2], probs) for _ in range(4))


def test_single_from_classes_takes_the_course_keyword_tfms(tiny):
    """F3:2109-2122: `ImageDataBunch.single_from_classes(path, classes, tfms=get_transforms(), size=224)`."""
    data2 = ImageDataBunch.single_from_classes(tiny, ["3", "7"], tfms=get_transforms(), size=28)
    data2.normalize(imagenet_stats)
    assert data2.classes == ["3", "7"]
    xb, _ = data2.one_item(open_image(sorted((tiny / "test").iterdir())[0]))
    assert xb.shape == (1, 3, 28, 28)


def test_pred_batch_and_test_set_predictions(trained):
    data = trained.data
    out = trained.pred_batch()
    assert out.shape == (16, 2) and torch.allclose(out.sum(1), torch.ones(16))
    cats = trained.pred_batch(reconstruct=True)
    assert len(cats) == 16 and all(isinstance(c, Category) for c in cats)
    assert [c.obj for c in cats] == [data.classes[i] for i in out.argmax(1).tolist()]
    test_out = trained.pred_batch(ds_type=DatasetType.Test)
    assert test_out.shape == (16, 2)
    preds, targs = trained.get_preds(DatasetType.Test)
    assert preds.shape == (20, 2) and torch.equal(targs, torch.zeros(20, dtype=torch.long))


def test_tta_blends_augmented_passes(trained):
    preds, targs = trained.get_preds()
    final, y = trained.TTA()
    assert final.shape == preds.shape and torch.equal(y, targs)
    assert torch.allclose(final.sum(1), torch.ones(len(final)), atol=1e-5)
    plain, avg, y2 = trained.TTA(beta=None)
    assert torch.allclose(plain, preds) and not torch.allclose(avg, preds)  # augmentation did something
    final, y, losses = trained.TTA(with_loss=True)
    assert losses.shape == (len(final),) and (losses >= 0).all()
    assert torch.allclose(losses, -torch.log(final[torch.arange(len(y)), y]), atol=1e-5)


def test_show_results_titles_prediction_over_actual(trained):
    assert trained.show_results(rows=2) is None
    fig = trained.show_results(rows=2, return_fig=True)
    assert isinstance(fig, matplotlib.figure.Figure)
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert len(axes) == 4
    preds = trained.pred_batch()[:4].argmax(1)
    targs = trained.data.one_batch(DatasetType.Valid)[1][:4]
    classes = trained.data.classes
    for ax, p, t in zip(axes, preds, targs):
        assert ax.get_title() == f"{classes[int(p)]}/{classes[int(t)]}"
        assert ax.title.get_color() == ("green" if int(p) == int(t) else "red")


# ------------------------------------------------------------------------------ interpretation


def test_classification_interpretation(trained):
    interp = ClassificationInterpretation.from_learner(trained)
    n = len(trained.data.valid_ds)
    cm = interp.confusion_matrix()
    assert cm.shape == (2, 2) and cm.sum() == n
    assert cm.sum(axis=1).tolist() == np.bincount(interp.y_true.numpy(), minlength=2).tolist()
    assert np.trace(cm) == int((interp.pred_class == interp.y_true).sum())
    confused = interp.most_confused()
    expected = sorted([(interp.classes[i], interp.classes[j], int(cm[i, j]))
                       for i in range(2) for j in range(2) if i != j and cm[i, j] >= 1], key=lambda t: -t[2])
    assert confused == expected
    assert all(count >= 2 for *_, count in interp.most_confused(min_val=2))
    losses, idxs = interp.top_losses()
    assert len(losses) == n and (losses[:-1] >= losses[1:]).all()
    assert torch.allclose(losses, -torch.log(interp.preds[idxs, interp.y_true[idxs]]), atol=1e-4)
    small, small_idx = interp.top_losses(5, largest=False)
    assert (small[:-1] <= small[1:]).all() and small[0] == losses[-1]
    fig = interp.plot_top_losses(4, figsize=(5, 5), return_fig=True)
    assert isinstance(fig, matplotlib.figure.Figure)
    titles = [t for t in visible_titles(fig)]
    assert len(titles) == 4
    for title, loss, i in zip(titles, losses[:4], idxs[:4]):
        pred, actual, shown_loss, prob = [s.strip() for s in title.split("/")]
        assert actual == trained.data.valid_ds.y[int(i)].obj and float(shown_loss) == pytest.approx(float(loss), abs=0.01)
    fig = interp.plot_confusion_matrix(return_fig=True)
    assert isinstance(fig, matplotlib.figure.Figure)
    texts = sorted(int(t.get_text()) for t in fig.axes[0].texts)
    assert texts == sorted(cm.flatten().tolist())
    fig = interp.plot_confusion_matrix(normalize=True, return_fig=True)
    values = [float(t.get_text()) for t in fig.axes[0].texts]
    assert sum(values) == pytest.approx(2.0, abs=0.02)  # each row sums to 1
    assert interp.plot_confusion_matrix() is None


# ------------------------------------------------------------------------ corrupt files, training


@pytest.fixture
def with_corrupt_files(tiny, tmp_path):
    """Eight real digits per class and split, plus a truncated copy deep in train/7 and in valid/3."""
    root = tmp_path / "data"
    for split in ("train", "valid"):
        for c in ("3", "7"):
            (root / split / c).mkdir(parents=True)
            for f in sorted((tiny / split / c).iterdir())[:8]:
                shutil.copy(f, root / split / c / f.name)
    bad = []
    for split, c in (("train", "7"), ("valid", "3")):
        files = sorted((root / split / c).iterdir())
        data = files[4].read_bytes()
        cut = root / split / c / f"{files[4].stem}_cut.png"  # sorts right after files[4]
        cut.write_bytes(data[: len(data) // 2])
        bad.append(cut)
    return root, bad


def test_fitting_over_a_corrupt_file_warns_and_goes_on(with_corrupt_files):
    root, bad = with_corrupt_files
    data = (ImageList.from_folder(root).split_by_folder().label_from_folder()
            .transform(TFMS, size=28).databunch(bs=17, num_workers=0))
    assert len(data.train_ds) == 17 and len(data.train_dl) == 1  # one batch holding every train item
    learn = Learner(data, tiny_model(), progress=False)
    with pytest.warns(UserWarning) as record:
        learn.fit(1, 1e-2)
    messages = " ".join(str(w.message) for w in record)
    assert bad[0].name in messages and bad[1].name in messages
    assert len(learn.recorder.losses) == 1
    with pytest.warns(UserWarning, match=re.escape(bad[0].name)):
        x, _ = data.one_batch()
    assert x.shape == (16, 3, 28, 28)


def test_interpretation_lines_up_with_the_items_when_one_was_unreadable(with_corrupt_files):
    """top_losses' indexes are indexes into the dataset (v1: `data.valid_ds.x[idxs]`, lesson 2), even
    when an unreadable file was skipped by the loader; plot_top_losses draws those items."""
    root, bad = with_corrupt_files
    data = (ImageList.from_folder(root).split_by_folder().label_from_folder()
            .transform(None, size=28).databunch(bs=8, num_workers=0))
    learn = Learner(data, tiny_model(), progress=False)
    ds = data.valid_ds
    with pytest.warns(UserWarning, match=re.escape(bad[1].name)):
        interp = ClassificationInterpretation.from_learner(learn)
        losses, idxs = interp.top_losses()
        fig = interp.plot_top_losses(len(losses), return_fig=True)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(losses) == len(ds) - 1
    bad_index = list(ds.x.items).index(bad[1])
    assert bad_index not in idxs.tolist()
    for loss, i in zip(losses.tolist(), idxs.tolist()):  # each loss is the loss of the item at that index
        probs = learn.predict(ds.x[i])[2]
        assert loss == pytest.approx(-float(torch.log(probs[int(ds.y.codes[i])])), abs=1e-4)
