"""deftly.widgets: DatasetFormatter's orders, the cleaning state (cleaned.csv that from_csv reads
back), and the ipywidgets views driven by code (clicks as `button.click()` / `toggle.value = True`)."""
from __future__ import annotations

import csv
import os
import shutil
import sys
import warnings

import pytest
import torch
from torch import nn

from deftly.core.errors import ConfigError, DataError
from deftly.data.databunch import DatasetType
from deftly.train.learner import Learner
from deftly.train.losses import CrossEntropyFlat
from deftly.vision import ImageDataBunch, ImageList, get_image_files
from deftly.widgets import CleanerState, DatasetFormatter, DeleterState, FileDeleter, ImageCleaner, thumbnail

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = {"black": "Trouser", "grizzly": "bag", "teddys": "sneaker"}  # bear name -> Fashion-MNIST class
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def bears(data_home, tmp_path):
    """bears/<black|grizzly|teddys>/<n>.jpg: 6 real Fashion-MNIST images a class (a fresh copy per test)."""
    path = tmp_path / "bears"
    for bear, cls in CLASSES.items():
        (path / bear).mkdir(parents=True)
        for n in range(1, 7):
            shutil.copy(data_home["pets"] / "images" / f"{cls}_{n}.jpg", path / bear / f"{n:08d}.jpg")
    return path


def small_cnn() -> nn.Sequential:
    """A body (conv layers) and a head, as cnn_learner's models are laid out."""
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1),
                         nn.ReLU())
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3))
    return nn.Sequential(body, head)


def learner_for(data) -> Learner:
    return Learner(data, small_cnn(), loss_func=CrossEntropyFlat(), progress=False)


def bunch(path, **kwargs):
    kwargs = {"size": 28, "bs": 4, "num_workers": 0, "device": "cpu", **kwargs}
    return ImageDataBunch.from_folder(path, train=".", valid_pct=0.5, seed=1, **kwargs)


def all_images(path) -> list:
    return sorted(p.relative_to(path).as_posix() for p in get_image_files(path, recurse=True))


def read_csv_rows(file) -> list[list[str]]:
    with open(file, newline="") as f:
        return list(csv.reader(f))


# ------------------------------------------------------------------------------------ DatasetFormatter


def test_from_toplosses_orders_the_valid_set_by_the_learners_losses(bears):
    learn = learner_for(bunch(bears))
    with pytest.warns(UserWarning, match=r"validation split only \(9 of the 18 labelled items\)"):
        ds, idxs = DatasetFormatter().from_toplosses(learn, ds_type=DatasetType.Valid)
    assert ds is learn.data.valid_ds
    _, _, losses = learn.get_preds(DatasetType.Valid, with_loss=True)
    assert idxs.tolist() == losses.argsort(descending=True).tolist()
    assert sorted(idxs.tolist()) == list(range(len(ds)))
    with pytest.warns(UserWarning, match="validation split only"):
        _, top3 = DatasetFormatter.from_toplosses(learn, n_imgs=3, ds_type=DatasetType.Valid)
    assert top3.tolist() == idxs[:3].tolist()
    with pytest.raises(ConfigError, match="n_imgs"):
        DatasetFormatter.from_toplosses(learn, n_imgs=0)


def test_from_toplosses_on_the_training_set_reads_it_in_order_without_changing_the_learner(bears):
    items = ImageList.from_folder(bears)
    lls = items.split_by_list(items, items).label_from_folder().transform(None, size=28)  # train == valid
    data = lls.databunch(bs=4, num_workers=0, device="cpu")
    learn = learner_for(data)
    with pytest.warns(UserWarning, match="cleaned.csv"):  # train == valid here: each is "one split of two"
        _, valid_order = DatasetFormatter.from_toplosses(learn, ds_type=DatasetType.Valid)
    with pytest.warns(UserWarning, match="training split only"):
        ds, train_order = DatasetFormatter.from_toplosses(learn, ds_type=DatasetType.Train)
    assert ds is data.train_ds
    assert train_order.tolist() == valid_order.tolist()  # no augmentation: the same losses in the same order
    assert learn.data is data and data.train_dl.dl.drop_last  # the learner's own loaders are as they were


def test_from_similars_pairs_a_duplicated_image_first(bears):
    shutil.copy(bears / "black" / "00000003.jpg", bears / "grizzly" / "00000099.jpg")  # the same picture twice
    items = ImageList.from_folder(bears)
    data = items.split_by_list(items, items).label_from_folder().transform(None, size=28).databunch(
        bs=4, num_workers=0, device="cpu")
    learn = learner_for(data)
    with pytest.warns(UserWarning, match="split_none"):
        ds, idxs = DatasetFormatter.from_similars(learn)
    names = {ds.x.items[i].relative_to(bears).as_posix() for i in idxs[:2]}
    assert names == {"black/00000003.jpg", "grizzly/00000099.jpg"}
    assert len(idxs) == 2 * len(ds) and all(i != j for i, j in zip(idxs[::2], idxs[1::2]))
    with pytest.raises(ConfigError, match=r"model\[0\]\[9\]"):
        DatasetFormatter.from_similars(learn, layer_ls=[0, 9])



def test_the_courses_whole_dataset_recipe_keeps_every_image_in_cleaned_csv(bears):
    """The module docstring's recipe: split_none(), rank the training split: no warning, and
    cleaned.csv lists all 18 images but the deleted one (a validation split would list 9)."""
    items = ImageList.from_folder(bears)
    db = items.split_none().label_from_folder().transform(None, size=28).databunch(bs=4, num_workers=0, device="cpu")
    learn_cln = learner_for(db)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds, idxs = DatasetFormatter().from_toplosses(learn_cln)  # the course's call: the training split
    assert ds is db.train_ds
    state = CleanerState.from_dataset(ds, idxs, bears)
    state.flag(state.batch()[0])
    state.next_batch()
    rows = read_csv_rows(bears / "cleaned.csv")[1:]
    assert len(ds) == 18 and len(rows) == 17
    assert sorted(name for name, _ in rows) == sorted(set(all_images(bears)) - {state._name(idxs[0].item())})


# ---------------------------------------------------------------------------------- the cleaning state


def test_delete_and_relabel_write_cleaned_csv_that_from_csv_reads_back(bears):
    before = all_images(bears)
    data = bunch(bears)
    ds = data.valid_ds
    files = [p.relative_to(bears).as_posix() for p in ds.x.items]
    state = CleanerState.from_dataset(ds, range(len(ds)), bears, batch_size=3)
    first = state.batch()
    assert first == [0, 1, 2] and state.progress() == f"batch 1 of {-(-len(ds) // 3)}"
    drop, move = first[0], first[1]
    new_label = next(c for c in CLASSES if c != state.labels[move])
    state.flag(drop)
    state.relabel(move, new_label)
    assert state.label(move) == new_label
    state.next_batch()

    rows = read_csv_rows(bears / "cleaned.csv")
    assert rows[0] == ["name", "label"]
    expected = [[f, new_label if i == move else str(ds.y.items[i])] for i, f in enumerate(files) if i != drop]
    assert rows[1:] == expected  # the dataset's order, names relative to path, the deleted one gone
    assert all_images(bears) == before  # no image file was deleted or moved

    back = ImageDataBunch.from_csv(bears, csv_labels="cleaned.csv", valid_pct=0.2, seed=0, size=28, num_workers=0)
    seen = {p.relative_to(bears).as_posix(): str(label)
            for part in (back.train_ds, back.valid_ds) for p, label in zip(part.x.items, part.y.items)}
    assert seen == dict(expected) and files[drop] not in seen
    assert seen[files[move]] == new_label


def test_review_walks_batches_and_keeps_decisions_of_later_batches_out(bears):
    ds = bunch(bears).valid_ds
    state = CleanerState.from_dataset(ds, [4, 0, 2, 1], bears, batch_size=3)
    assert state.batch() == [4, 0, 2]
    state.flag(4)
    state.flag(4, delete=False)  # changed its mind
    state.relabel(0, state.labels[0])  # the same label: not a relabel
    with pytest.raises(ConfigError, match="not in the current batch"):
        state.flag(1)
    with pytest.raises(ConfigError, match="not one of the classes"):
        state.relabel(0, "panda")
    assert state.next_batch() == [1] and state.deleted == set() and state.relabelled == {}
    state.flag(1)
    assert state.next_batch() == [] and state.done and state.progress() == "done"
    kept = [r[0] for r in read_csv_rows(bears / "cleaned.csv")[1:]]
    assert len(kept) == len(ds) - 1  # every item of ds but the deleted one, not just the reviewed ones


def test_duplicates_mode_shows_pairs_and_skips_a_pair_whose_image_is_gone(bears):
    ds = bunch(bears).valid_ds
    state = CleanerState.from_dataset(ds, [0, 1, 1, 2, 3, 4], bears, batch_size=5, duplicates=True)
    assert state.batch() == [0, 1]
    state.flag(1)
    assert state.next_batch() == [3, 4]  # the pair (1, 2) is skipped: 1 is deleted
    with pytest.raises(ConfigError, match="pairs"):
        CleanerState.from_dataset(ds, [0, 1, 2], bears, duplicates=True)


def test_bad_arguments_say_what_is_wrong(bears, tmp_path):
    ds = bunch(bears).valid_ds
    with pytest.raises(ConfigError, match="outside"):
        CleanerState.from_dataset(ds, [len(ds)], bears)
    with pytest.raises(ConfigError, match="batch_size"):
        CleanerState.from_dataset(ds, [0], bears, batch_size=0)
    with pytest.raises(ConfigError, match="labelled dataset"):
        CleanerState.from_dataset(ds.x, [0], bears)
    state = CleanerState.from_dataset(ds, [0], tmp_path / "missing")
    with pytest.raises(DataError, match="missing"):
        state.next_batch()
    with pytest.raises(DataError, match="existing file"):
        DeleterState([tmp_path / "nope.jpg"])


# ---------------------------------------------------------------------------------------- the widgets


def test_image_cleaner_widget_clicks_write_the_csv(bears):
    pytest.importorskip("ipywidgets")
    ds = bunch(bears).valid_ds
    before = all_images(bears)
    idxs = list(range(len(ds)))[::-1]
    assert len(ds) == 9
    cleaner = ImageCleaner(ds, idxs, bears, batch_size=5, display=False)
    assert len(cleaner.delete_buttons) == len(cleaner.label_dropdowns) == 5
    tile = cleaner.widget.children[0].children[0]
    assert bytes(tile.children[0].value).startswith(PNG) and tile.children[1].value == ds.x.items[idxs[0]].name
    assert cleaner.label_dropdowns[0].value == str(ds.y.items[idxs[0]])
    assert list(cleaner.label_dropdowns[0].options) == sorted(CLASSES)

    cleaner.delete_buttons[0].value = True
    assert cleaner.delete_buttons[0].button_style == "danger"
    other = next(c for c in CLASSES if c != cleaner.label_dropdowns[1].value)
    cleaner.label_dropdowns[1].value = other
    cleaner.next_button.click()
    rows = dict(read_csv_rows(bears / "cleaned.csv")[1:])
    name = lambda i: ds.x.items[i].relative_to(bears).as_posix()  # noqa: E731
    assert name(idxs[0]) not in rows and rows[name(idxs[1])] == other and len(rows) == len(ds) - 1
    assert cleaner.status.value == "batch 2 of 2" and len(cleaner.delete_buttons) == 4

    cleaner.next_button.click()
    assert cleaner.state.done and "No images to show" in cleaner.widget.children[0].value
    assert "cleaned.csv" in cleaner.widget.children[1].value
    assert all_images(bears) == before


def test_file_deleter_moves_confirmed_files_to_a_trash_folder_and_can_restore_them(bears):
    pytest.importorskip("ipywidgets")
    files = sorted((bears / "black").glob("*.jpg")) + sorted((bears / "teddys").glob("*.jpg"))
    fd = FileDeleter(file_paths=[*files, bears / "gone.jpg"], batch_size=5, display=False)
    assert len(fd.state.files) == len(files)  # paths that are not files are left out, as in v1
    fd.delete_buttons[1].value = True
    fd.delete_buttons[2].value = True
    fd.delete_buttons[2].value = False  # un-flagged before confirming: stays
    assert files[1].exists()  # nothing happens before Confirm
    fd.next_button.click()
    trashed = bears / ".deftly_trash" / "black" / files[1].name
    assert not files[1].exists() and trashed.is_file() and files[2].exists()
    assert str(trashed.relative_to(bears)) not in all_images(bears)  # the data factories do not see it
    assert fd.state.restore() == [files[1]] and files[1].is_file() and not trashed.exists()


def test_file_deleter_takes_the_courses_item_list(bears):
    pytest.importorskip("ipywidgets")
    data = bunch(bears)
    top_loss_paths = data.valid_ds.x[[2, 0, 1]]  # what `data.valid_ds.x[idxs]` gives
    fd = FileDeleter(file_paths=top_loss_paths, display=False)
    assert fd.state.files == [data.valid_ds.x.items[i] for i in (2, 0, 1)]


def test_thumbnail_enlarges_small_images_and_reports_unreadable_ones(bears, tmp_path):
    import PIL.Image

    data = thumbnail(bears / "black" / "00000001.jpg", size=140)
    with PIL.Image.open(__import__("io").BytesIO(data)) as im:
        assert im.size == (140, 140)
    (tmp_path / "bad.jpg").write_bytes(b"<html>not an image</html>")
    assert thumbnail(tmp_path / "bad.jpg") is None


def test_a_missing_ipywidgets_is_a_clear_error(bears, monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # `import ipywidgets` now raises ImportError
    with pytest.raises(ConfigError, match=r"deftly\[notebook\]"):
        FileDeleter([bears / "black" / "00000001.jpg"], display=False)


def test_star_import_gives_the_courses_names():
    namespace: dict = {}
    exec("from deftly.widgets import *", namespace)
    assert {"DatasetFormatter", "ImageCleaner", "FileDeleter"} <= set(namespace)



# ------------------------------------------------------------------------- FileDeleter's failure modes


def test_file_deleter_lists_each_file_once_and_skips_a_file_deleted_outside_it(bears, monkeypatch):
    files = sorted((bears / "black").glob("*.jpg"))
    monkeypatch.chdir(bears)
    state = DeleterState([files[0], files[1], "black/" + files[1].name, "./black/" + files[0].name, files[2]],
                         batch_size=5)
    assert state.files == files[:3]  # the same file named three ways is shown once, as an absolute path
    state.flag(0)
    state.flag(1)
    files[0].unlink()  # deleted outside the widget before Confirm
    with pytest.warns(UserWarning, match=f"{files[0].name} is gone"):
        assert state.next_batch() == []
    assert state.done and state.missing == [files[0]]
    assert [original for original, _ in state.moved] == [files[1]] and not files[1].exists()
    assert files[2].exists()


def test_a_batch_that_fails_part_way_is_confirmed_again_without_moving_a_file_twice(bears, monkeypatch):
    import deftly.widgets.review as review

    files = sorted((bears / "black").glob("*.jpg"))[:4]
    state = DeleterState(files, batch_size=2)
    state.flag(0)
    state.flag(1)
    real_move = shutil.move

    def refuse_the_second(src, dst):
        if src == str(files[1]):
            raise PermissionError(13, "Permission denied", src)
        return real_move(src, dst)

    monkeypatch.setattr(review.shutil, "move", refuse_the_second)
    with pytest.raises(DataError, match=f"confirm again.*{files[1].name}"):
        state.next_batch()
    assert state.batch() == [0, 1] and not files[0].exists() and files[1].exists()  # still on this batch
    monkeypatch.setattr(review.shutil, "move", real_move)
    assert state.next_batch() == [2, 3]  # the retry moves the second file only
    assert [original for original, _ in state.moved] == files[:2] and state.missing == []
    assert not files[1].exists()
    assert state.restore() == files[:2] and all(f.is_file() for f in files)


def test_file_deleter_on_a_folder_of_symlinks_trashes_and_restores_the_links(bears, tmp_path, monkeypatch):
    """A dataset of relative symlinks to images stored elsewhere: the trash goes beside the links
    (not into the store), the link itself moves, restore() brings the link back, and the paths
    given stay what they meant after os.chdir."""
    store, links = bears / "black", tmp_path / "dataset" / "black"
    links.mkdir(parents=True)
    targets = sorted(store.glob("*.jpg"))[:3]
    for t in targets:
        (links / t.name).symlink_to(os.path.relpath(t, links))
    monkeypatch.chdir(tmp_path / "dataset")
    state = DeleterState([f"black/{t.name}" for t in targets])
    monkeypatch.chdir(bears)  # relative names given before would now mean the store's files
    assert state.root == links and state.trash == links / ".deftly_trash"
    state.flag(1)
    state.next_batch()
    link, trashed = links / targets[1].name, links / ".deftly_trash" / targets[1].name
    assert state.moved == [(link, trashed)] and trashed.is_symlink() and not os.path.lexists(link)
    assert all(t.is_file() for t in targets)  # the images in the store are untouched
    assert not (store / ".deftly_trash").exists()
    assert state.restore() == [link] and link.is_symlink() and link.resolve() == targets[1].resolve()
    assert not os.path.lexists(trashed) and state.moved == []


def test_file_names_are_escaped_in_the_widgets_html(tmp_path):
    pytest.importorskip("ipywidgets")
    bad = tmp_path / "<img src=x onerror=alert(1)>.jpg"
    bad.write_bytes(b"not an image")
    fd = FileDeleter([bad], display=False)
    html = fd.widget.children[0].children[0].children[0].value
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;.jpg" in html
