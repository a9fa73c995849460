"""The data block API: split (`ItemLists`), label (`LabelLists` of `LabelList`s), transform, databunch.

    ImageList.from_folder(path).split_by_folder().label_from_folder().transform(tfms, size=28).databunch(bs=64)

Each step returns a new object; nothing is opened until an item is asked for. `summary()` walks one
item through every step and says where it fails.
"""
from __future__ import annotations

import copy
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from deftly.core.device import defaults
from deftly.core.errors import ConfigError, DataError
from deftly.data.databunch import DataBunch, DeviceDataLoader
from deftly.data.items import EmptyLabelList, ItemList, label_cls_for


class ItemLists:
    """The train and valid `ItemList`s of a split, before labelling."""

    def __init__(self, path: str | os.PathLike, train: ItemList, valid: ItemList):
        self.path = Path(path)
        self.train, self.valid = train, valid

    def __repr__(self) -> str:
        return f"{type(self).__name__};\n\nTrain: {self.train};\n\nValid: {self.valid};\n"

    @property
    def lists(self) -> list[ItemList]:
        return [self.train, self.valid]

    # --- labelling -------------------------------------------------------------------------------
    def label_from_func(self, func: Callable[[Any], Any], label_cls: type | None = None, **kwargs: Any) -> "LabelLists":
        """Labels from a function of each item (e.g. of its file name)."""
        return self._label(self.train.labels_from_func(func), self.valid.labels_from_func(func), label_cls, **kwargs)

    def label_from_folder(self, label_cls: type | None = None, **kwargs: Any) -> "LabelLists":
        """Labels are the names of the items' parent folders; with `classes=`, other items are dropped."""
        return self._label(self.train.labels_from_folder(), self.valid.labels_from_folder(), label_cls, **kwargs)

    def label_from_re(self, pat: str | re.Pattern, full_path: bool = False, label_cls: type | None = None,
                      **kwargs: Any) -> "LabelLists":
        """Labels are the first group of a regular expression searched in each file path."""
        return self._label(self.train.labels_from_re(pat, full_path), self.valid.labels_from_re(pat, full_path),
                           label_cls, **kwargs)

    def label_from_df(self, cols: int | str | Sequence = 1, label_cls: type | None = None, **kwargs: Any) -> "LabelLists":
        """Labels from column(s) of the DataFrame; `label_delim` (or `sep`) splits multi-label
        strings, several columns give one-hot multi-label targets unless `label_cls` says otherwise."""
        if "sep" in kwargs:  # the course's older name
            kwargs["label_delim"] = kwargs.pop("sep")
        several = isinstance(cols, (list, tuple)) and len(cols) > 1
        if several and label_cls is None and kwargs.get("label_delim") is None:
            from deftly.data.items import MultiCategoryList
            label_cls = MultiCategoryList
            kwargs.update(one_hot=True, classes=list(cols))
        return self._label(self.train.labels_from_df(cols), self.valid.labels_from_df(cols), label_cls, **kwargs)

    def label_from_lists(self, train_labels: Iterable[Any], valid_labels: Iterable[Any],
                         label_cls: type | None = None, **kwargs: Any) -> "LabelLists":
        """Labels given as two lists, one per split."""
        train_labels, valid_labels = list(train_labels), list(valid_labels)
        for name, labels, items in (("train", train_labels, self.train), ("valid", valid_labels, self.valid)):
            if len(labels) != len(items):
                raise DataError(f"label_from_lists: {len(labels)} {name} labels for {len(items)} {name} items")
        return self._label(train_labels, valid_labels, label_cls, **kwargs)

    def label_const(self, const: Any = 0, label_cls: type | None = None, **kwargs: Any) -> "LabelLists":
        """Every item gets the label `const`."""
        return self._label([const] * len(self.train), [const] * len(self.valid), label_cls, **kwargs)

    def label_for_lm(self, **kwargs: Any) -> "LabelLists":
        """Labels for a language model: each text is its own target (item types that have them,
        e.g. TextList, name their label class in `lm_label_cls`)."""
        label_cls = getattr(self.train, "lm_label_cls", None)
        if label_cls is None:
            raise ConfigError(f"label_for_lm needs texts (a TextList), not {type(self.train).__name__}")
        return self._label([0] * len(self.train), [0] * len(self.valid), label_cls, **kwargs)

    def label_empty(self, **kwargs: Any) -> "LabelLists":
        """No labels (e.g. for an inference-only set)."""
        return self._label([0] * len(self.train), [0] * len(self.valid), EmptyLabelList, **kwargs)

    def _label(self, train_labels: list[Any], valid_labels: list[Any], label_cls: type | None,
               **kwargs: Any) -> "LabelLists":
        label_cls = label_cls_for(train_labels or valid_labels, label_cls, kwargs.get("label_delim"))
        explicit = kwargs.get("classes") is not None
        y_train = label_cls(train_labels, path=self.path, **kwargs)
        if hasattr(y_train, "classes") and "classes" not in kwargs:
            kwargs["classes"] = y_train.classes
        y_valid = label_cls(valid_labels, path=self.path, **kwargs)
        ll_cls = getattr(self.train, "label_list_cls", None) or LabelList  # an item type's own LabelList
        train = _drop_unknown(ll_cls(self.train, y_train), "training", warn=False)
        valid = _drop_unknown(ll_cls(self.valid, y_valid), "validation", warn=not explicit)
        return LabelLists(self.path, train, valid)

    # --- filters applied to both lists ---------------------------------------------------------
    def filter_by_func(self, func: Callable[[Any], bool]) -> "ItemLists":
        return ItemLists(self.path, self.train.filter_by_func(func), self.valid.filter_by_func(func))


def _drop_unknown(ll: "LabelList", name: str, warn: bool) -> "LabelList":
    """Drop the items whose label is not among the classes (v1's `filter_missing_y`)."""
    unknown = ll.y.unknown() if hasattr(ll.y, "unknown") else np.array([], dtype=np.int64)
    if len(unknown) == 0:
        return ll
    if warn:
        examples = ", ".join(f"{ll.x.items[i]} ({ll.y.describe(i)!r})" for i in unknown[:3])
        warnings.warn(f"{len(unknown)} {name} item(s) have labels never seen in training and were removed, "
                      f"e.g. {examples}", stacklevel=4)
    keep = np.setdiff1d(np.arange(len(ll)), unknown)
    return ll[keep]


class LabelList(Dataset):
    """Inputs `x` and targets `y` of one split: a torch Dataset. `ll[i]` gives `(x, y)` as objects
    (e.g. an `Image` and a `Category`) after the item transforms; the DataLoader reads tensors."""

    def __init__(self, x: ItemList, y: ItemList):
        if len(x) != len(y):
            raise DataError(f"{len(x)} items but {len(y)} labels")
        self.x, self.y = x, y
        self.item_tfm: Callable | None = None
        self.batch_tfms: list[Callable] = []
        self.tfm_args: dict[str, Any] = {}

    @property
    def path(self) -> Path:
        return self.x.path

    @property
    def items(self) -> np.ndarray:
        return self.x.items

    @property
    def c(self) -> int | None:
        return getattr(self.y, "c", None)

    @property
    def classes(self) -> list[Any] | None:
        return getattr(self.y, "classes", None)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, idx: Any) -> Any:
        if isinstance(idx, (int, np.integer)):
            xt, yt = self.encoded(int(idx) % len(self) if -len(self) <= idx < len(self) else idx)
            return self.x.reconstruct(xt), self.y.reconstruct(yt)
        sub = type(self)(self.x[idx], self.y[idx])
        sub.item_tfm, sub.batch_tfms, sub.tfm_args = self.item_tfm, self.batch_tfms, self.tfm_args
        return sub

    def encoded(self, i: int) -> tuple[Any, Any]:
        """Item `i` as the tensors the DataLoader collates (item transforms applied)."""
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} is out of range for a LabelList of {len(self)} items")
        return self.encode_pair(self.x.raw(i), self.y.raw(i))

    def encode_pair(self, x_raw: Any, y_raw: Any) -> tuple[Any, Any]:
        if self.item_tfm is None:
            return self.x.encode(x_raw), self.y.encode(y_raw)
        x, y = self.item_tfm(x_raw, y_raw)
        return x, (y if isinstance(y, torch.Tensor) else self.y.encode(y))

    def encode_x(self, x_raw: Any) -> Any:
        """An opened input alone as the tensor the model reads (for prediction)."""
        if self.item_tfm is None:
            return self.x.encode(x_raw)
        return self.item_tfm(x_raw, None)[0]

    def set_transforms(self, tfms: Sequence[Any] | None, train: bool, **kwargs: Any) -> "LabelList":
        """Attach the per-item and per-batch transforms of this split (see `LabelLists.transform`)."""
        y_kind = self.y.kind
        self.item_tfm = self.x.item_transform(tfms, train=train, y_kind=y_kind, **kwargs)
        self.batch_tfms = self.x.batch_transforms(tfms, train=train, y_kind=y_kind, **kwargs)
        self.tfm_args = dict(tfms=tfms, train=train, **kwargs)
        return self

    def loader_view(self) -> Dataset:
        """What the DataLoader reads: encoded tensors; an unreadable input is skipped with a warning."""
        return _Encoded(self)

    def __repr__(self) -> str:
        return (f"{type(self).__name__} ({len(self)} items)\nx: {type(self.x).__name__}\n"
                f"{_first(self.x)}\ny: {type(self.y).__name__}\n{_first(self.y)}\nPath: {self.path}")


def _shallow(ll: "LabelList") -> "LabelList":
    """A LabelList sharing the items but with its own inputs list and transforms."""
    new = copy.copy(ll)
    new.x = copy.copy(ll.x)
    return new


def _first(il: ItemList) -> str:
    return ",".join(il.describe(i) for i in range(min(5, len(il))))


class _Encoded(Dataset):
    """A LabelList seen as tensors; an input that fails to open yields None (dropped at collate)."""

    def __init__(self, ll: LabelList):
        self.ll = ll

    def __len__(self) -> int:
        return len(self.ll)

    def __getitem__(self, i: int) -> Any:
        try:
            return self.ll.encoded(i)
        except DataError as e:
            warnings.warn(f"skipping item {i} of {len(self.ll)}: {e}", stacklevel=2)
            return None


def collate_skipping(batch: list[Any]) -> Any:
    """torch's default_collate, after dropping the items that could not be read; a clear error when
    items differ in size."""
    items = [b for b in batch if b is not None]
    if not items:
        raise DataError(f"none of the {len(batch)} items of a batch could be read (see the warnings above)")
    try:
        return default_collate(items)
    except RuntimeError as e:
        if "stack expects each tensor to be equal size" in str(e) or "equal size" in str(e):
            raise DataError("the items of a batch have different sizes; pass size= to transform() "
                            f"(or to the ImageDataBunch factory) so they are resized alike ({e})") from e
        raise


class LabelLists:
    """The labelled train and valid lists (and an optional test list) of a dataset."""

    def __init__(self, path: str | os.PathLike, train: LabelList, valid: LabelList, test: LabelList | None = None):
        self.path = Path(path)
        self.train, self.valid, self.test = train, valid, test
        self._tfms: tuple[Any, Any] = (None, None)
        self._tfm_kwargs: dict[str, Any] = {}
        for ll, is_train in ((train, True), (valid, False)):
            ll.set_transforms(None, train=is_train)

    @property
    def lists(self) -> list[LabelList]:
        return [ll for ll in (self.train, self.valid, self.test) if ll is not None]

    def __repr__(self) -> str:
        test = f"Test: {self.test}" if self.test is not None else "Test: None"
        return f"{type(self).__name__};\n\nTrain: {self.train};\n\nValid: {self.valid};\n\n{test}"

    def transform(self, tfms: Sequence[Any] | tuple[Any, Any] | None = (None, None), **kwargs: Any) -> "LabelLists":
        """Attach the (train, valid) transforms; keyword arguments go to the item type (for images:
        size, resize_method, padding_mode, mode, tfm_y). The test set gets the valid transforms."""
        if tfms is None:
            tfms = (None, None)
        if not (isinstance(tfms, (tuple, list)) and len(tfms) == 2 and all(t is None or isinstance(t, (list, tuple))
                                                                          for t in tfms)):
            raise ConfigError("transform() takes a pair (train_tfms, valid_tfms), e.g. get_transforms()")
        out = copy.copy(self)
        out.train, out.valid = _shallow(self.train), _shallow(self.valid)
        out.test = _shallow(self.test) if self.test is not None else None
        out._tfms, out._tfm_kwargs = tuple(tfms), dict(kwargs)
        out.train.set_transforms(tfms[0], train=True, **kwargs)
        out.valid.set_transforms(tfms[1], train=False, **kwargs)
        if out.test is not None:
            out.test.set_transforms(tfms[1], train=False, **kwargs)
        return out

    def add_test(self, items: Iterable[Any], label: Any = None) -> "LabelLists":
        """Add an unlabelled test set (items of the same kind as the training inputs)."""
        x = items if isinstance(items, ItemList) else self.train.x.new(list(items))
        if label is None:
            y = EmptyLabelList([0] * len(x), path=self.path)
        else:
            y = self.train.y.new([label] * len(x))
        self.test = type(self.train)(x, y).set_transforms(self._tfms[1], train=False, **self._tfm_kwargs)
        return self

    def filter_missing_y(self) -> "LabelLists":
        """Drop items whose label is not among the classes (v1 name; labelling already drops them)."""
        return self

    def add_test_folder(self, test_folder: str = "test", label: Any = None) -> "LabelLists":
        """Add the files under `path/test_folder` as the test set."""
        folder = self.path / test_folder
        if not folder.is_dir():
            raise DataError("add_test_folder: no such folder", where=str(folder))
        found = type(self.train.x).from_folder(folder)
        return self.add_test(found.items, label=label)

    def databunch(self, path: str | os.PathLike | None = None, bs: int = 64, val_bs: int | None = None,
                  num_workers: int | None = None, device: torch.device | str | None = None,
                  collate_fn: Callable = collate_skipping, dl_tfms: Sequence[Callable] | None = None,
                  no_check: bool = False, **kwargs: Any) -> DataBunch:
        """Build the DataLoaders and the DataBunch of the item type (e.g. an ImageDataBunch)."""
        bunch_cls = self.train.x._bunch or DataBunch
        return bunch_cls.from_label_lists(self, path=path, bs=bs, val_bs=val_bs, num_workers=num_workers,
                                          device=device, collate_fn=collate_fn, dl_tfms=dl_tfms, **kwargs)

    def summary(self, i: int = 0) -> "Summary":
        """Walk item `i` of the training set through every step and say where and why it fails."""
        return summarize(self, i)


class Summary(str):
    """Text that shows as itself in a notebook or REPL (not as a quoted string)."""

    def __repr__(self) -> str:
        return str(self)


def summarize(lls: LabelLists, i: int = 0) -> Summary:
    lines = [f"Train: {len(lls.train)} items; Valid: {len(lls.valid)} items"
             + (f"; Test: {len(lls.test)} items" if lls.test is not None else ""),
             f"x: {type(lls.train.x).__name__}   y: {type(lls.train.y).__name__}"]
    if lls.train.classes is not None:
        shown = lls.train.classes[:20]
        lines.append(f"classes ({len(lls.train.classes)}): {shown}{' ...' if len(lls.train.classes) > 20 else ''}")
    ll = lls.train

    def step(name: str, fn: Callable[[], Any]) -> Any:
        try:
            out = fn()
        except Exception as e:  # reporting the failing step is what summary() is for
            lines.append(f"  {name}: FAILED with {type(e).__name__}: {e}")
            raise _Stop from e
        lines.append(f"  {name}: {_describe(out)}")
        return out

    if len(ll) == 0:
        lines.append("the training set is empty: nothing to walk through")
        return Summary("\n".join(lines))
    lines.append(f"walking training item {i}:")
    try:
        step("item", lambda: ll.x.items[i])
        x_raw = step("open x", lambda: ll.x.raw(i))
        y_raw = step("label", lambda: (ll.y.items[i], ll.y.raw(i)))[1]
        pair = step("item transforms" if ll.item_tfm else "encode (no item transforms)",
                    lambda: ll.encode_pair(x_raw, y_raw))
        batch = step("collate 2 copies", lambda: collate_skipping([pair, pair]))
        for tfm in ll.batch_tfms:
            batch = step(f"batch transform {type(tfm).__name__}", lambda: tfm(batch))
        lines.append("every step works.")
    except _Stop:
        lines.append("fix the step that failed, then call summary() again.")
    return Summary("\n".join(lines))


class _Stop(Exception):
    pass


def _describe(obj: Any) -> str:
    if isinstance(obj, torch.Tensor):
        return f"tensor {tuple(obj.shape)} {str(obj.dtype).replace('torch.', '')}"
    if isinstance(obj, (tuple, list)) and len(obj) <= 4:
        return "(" + ", ".join(_describe(o) for o in obj) + ")"
    if hasattr(obj, "mode") and hasattr(obj, "size") and not isinstance(obj, torch.Tensor):  # a PIL image
        return f"{type(obj).__name__} mode {obj.mode} size {obj.size[0]}x{obj.size[1]}"
    text = repr(obj)
    return text if len(text) < 120 else text[:117] + "..."


def build_loaders(lls: LabelLists, bs: int, val_bs: int | None, num_workers: int | None,
                  device: torch.device | str | None, collate_fn: Callable,
                  dl_tfms: Sequence[Callable] | None) -> dict[str, Any]:
    """The DeviceDataLoaders of each split of `lls`; an empty split gets none (a valid split made
    with `no_split`), an empty training set only a loader without shuffling (inference-only data)."""
    num_workers = defaults.num_workers if num_workers is None else num_workers
    device = torch.device(device) if device is not None else defaults.device
    on = None if device.type == "cpu" else device
    val_bs = val_bs or bs
    loader = dict(num_workers=num_workers, collate_fn=collate_fn, persistent_workers=num_workers > 0)
    if num_workers > 0:
        from deftly.core.seed import seed_worker
        loader["worker_init_fn"] = seed_worker

    def make(ll: LabelList | None, size: int, train: bool) -> DeviceDataLoader | None:
        if ll is None or (len(ll) == 0 and not train):
            return None
        view = ll.loader_view()
        shuffle = train and len(ll) > 0
        dl = torch.utils.data.DataLoader(view, size, shuffle=shuffle, drop_last=train and len(ll) > size, **loader)
        return DeviceDataLoader(dl, on, [*ll.batch_tfms, *(dl_tfms or [])], dataset=ll)

    return dict(train_dl=make(lls.train, bs, True), valid_dl=make(lls.valid, val_bs, False),
                test_dl=make(lls.test, val_bs, False), device=device)
