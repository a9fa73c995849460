"""Image data: `ImageList` for the data block API and `ImageDataBunch` with the course's factories.

Images are decoded and resized per item in the DataLoader workers (as uint8 tensors), then
augmented and normalised per batch on the device (`deftly.vision.transform`).
"""
from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import PIL.Image
import torch
from torch import Tensor

from deftly.core.errors import ConfigError, DataError
from deftly.data.block import LabelLists
from deftly.data.databunch import DataBunch, DatasetType, DeviceDataLoader
from deftly.data.items import CategoryList, ItemList, read_csv
from deftly.vision.image import Image, image_extensions, pil2tensor, read_pil
from deftly.vision.transform import BatchAugment, ItemResize, Normalize, batch_stats

_IMAGE_TFM_ARGS = ("size", "resize_method", "padding_mode", "mode", "tfm_y")


class PairTransform:
    """Adapts a transform `f(x, y) -> (x, y)` to the DataLoader's batch `(x, y) -> (x, y)`."""

    def __init__(self, fn: Callable[[Tensor, Any], tuple[Tensor, Any]]):
        self.fn = fn

    def __call__(self, batch: tuple[Any, Any]) -> tuple[Any, Any]:
        return self.fn(*batch)

    def __repr__(self) -> str:
        return repr(self.fn)


class NormalizeBatch:
    """The batch step of `data.normalize`: x (and, with `do_y`, image targets) normalised."""

    def __init__(self, norm: Normalize, do_x: bool = True, do_y: bool = False, inplace: bool = False):
        self.norm, self.do_x, self.do_y = norm, do_x, do_y
        self.inplace = inplace  # x is always a batch the step before just made (see ImageDataBunch.normalize)

    def __call__(self, batch: tuple[Any, Any]) -> tuple[Any, Any]:
        x, y = batch
        return (self.norm(x, inplace=self.inplace) if self.do_x else x), (self.norm(y) if self.do_y else y)

    def __repr__(self) -> str:
        return repr(self.norm)


class ImageList(ItemList):
    """Image files (or other sources `read_pil` takes); `il[i]` opens an `Image`."""

    kind = "image"

    def __init__(self, items: Iterable[Any], convert_mode: str = "RGB",
                 after_open: Callable[[PIL.Image.Image], PIL.Image.Image] | None = None, **kwargs: Any):
        super().__init__(items, **kwargs)
        self.convert_mode, self.after_open = convert_mode, after_open
        self._kwargs.update(convert_mode=convert_mode, after_open=after_open)
        self.draft: tuple[int, int] | None = None  # (w, h) JPEGs may be decoded down to

    @classmethod
    def from_folder(cls, path: str | os.PathLike = ".", extensions: Iterable[str] | None = None,
                    **kwargs: Any) -> "ImageList":
        """Every image file under `path` (recursively by default)."""
        return super().from_folder(path, extensions if extensions is not None else image_extensions, **kwargs)

    @classmethod
    def from_df(cls, df: pd.DataFrame, path: str | os.PathLike = ".", cols: int | str | Sequence = 0,
                folder: str | os.PathLike | None = None, suffix: str = "", **kwargs: Any) -> "ImageList":
        """Files `path/[folder/]<value><suffix>` named in column `cols` of `df`; every one must exist."""
        il = super().from_df(df, path, cols=cols, folder=folder if folder is not None else ".", suffix=suffix,
                             **kwargs)
        missing = [i for i, f in enumerate(il.items) if not Path(f).is_file()]
        if missing:
            shown = "; ".join(f"row {i}: {il.items[i]}" for i in missing[:3])
            raise DataError(f"{len(missing)} of {len(il)} files named in the table do not exist ({shown}"
                            f"{'; ...' if len(missing) > 3 else ''}); check path, folder= and suffix=",
                            where=df.attrs.get("source"))
        return il

    def new(self, items: Iterable[Any], **kwargs: Any) -> "ImageList":
        out = super().new(items, **kwargs)
        out.draft = self.draft
        return out

    def open(self, fn: Any) -> Image:
        """Open one file as an Image (v1 name)."""
        return self.reconstruct(self.encode(self.from_object(fn)))

    def raw(self, i: int) -> PIL.Image.Image:
        return self._read(self.items[i])

    def get(self, i: int) -> Image:
        return self.reconstruct(self.encode(self._read(self.items[i], draft=None)))

    def _read(self, source: Any, draft: Any = "loader") -> PIL.Image.Image:
        draft = self.draft if draft == "loader" else draft
        if self.after_open is None:  # nothing will look at the file's metadata (EXIF) or format
            return read_pil(source, self.convert_mode, draft, pixels_only=True)
        return self.after_open(read_pil(source, self.convert_mode, draft))

    def encode(self, raw: PIL.Image.Image) -> Tensor:
        return pil2tensor(raw, torch.uint8)

    def reconstruct(self, t: Tensor) -> Image:
        return Image(t.float().div_(255) if t.dtype == torch.uint8 else t.float())

    def from_object(self, obj: Any) -> PIL.Image.Image:
        """An Image, PIL image, (C, H, W) tensor, file name or bytes as a PIL image of `convert_mode`."""
        if isinstance(obj, Image):
            obj = obj.data
        if isinstance(obj, Tensor):
            if obj.ndim != 3:
                raise DataError(f"an image tensor must be (C, H, W), got shape {tuple(obj.shape)}")
            obj = Image(obj.float() / 255 if obj.dtype == torch.uint8 else obj.float()).to_pil()
        if isinstance(obj, PIL.Image.Image):
            return obj.convert(self.convert_mode)
        if isinstance(obj, (str, os.PathLike, bytes, io.BytesIO)):
            return self._read(obj)
        raise DataError(f"cannot make an image out of a {type(obj).__name__}")

    def describe(self, i: int) -> str:
        try:
            im = self._read(self.items[i], draft=None)
        except DataError:
            return "<unreadable image>"
        return f"Image ({len(im.getbands())}, {im.size[1]}, {im.size[0]})"

    def item_transform(self, tfms: Sequence[Any] | None, train: bool, y_kind: str | None = None,
                       tfm_y: bool = False, size: int | tuple[int, int] | None = None,
                       resize_method: str | None = None, padding_mode: str = "reflection", mode: str = "bilinear",
                       **kwargs: Any) -> Callable:
        _check_args(kwargs)
        resize = ItemResize.from_tfms(tfms or [], size=size, resize_method=resize_method or "crop",
                                      padding_mode=padding_mode, y_kind=y_kind if tfm_y else None, lighting=True)
        self.draft = None if resize.size is None else (resize.size[1], resize.size[0])
        return resize

    def batch_transforms(self, tfms: Sequence[Any] | None, train: bool, y_kind: str | None = None,
                         tfm_y: bool = False, padding_mode: str = "reflection", mode: str = "bilinear",
                         **kwargs: Any) -> list[Callable]:
        kwargs.pop("size", None), kwargs.pop("resize_method", None)
        _check_args(kwargs)
        geometry = [t for t in tfms or [] if t.kind != "lighting"]  # lighting runs per item (ItemResize)
        return [PairTransform(BatchAugment(geometry, padding_mode=padding_mode, mode=mode, tfm_y=tfm_y,
                                           y_kind=y_kind if tfm_y else None))]

    # --- display (an item type knows how to show itself) ----------------------------------------
    @staticmethod
    def show_xys(xs: Sequence[Image], ys: Sequence[Any], figsize: tuple[float, float] | None = None,
                 **kwargs: Any) -> Any:
        """A grid of images titled with their labels; returns the figure."""
        return _grid([(x, str(y), None) for x, y in zip(xs, ys)], figsize, **kwargs)

    @staticmethod
    def show_xyzs(xs: Sequence[Image], ys: Sequence[Any], zs: Sequence[Any],
                  figsize: tuple[float, float] | None = None, **kwargs: Any) -> Any:
        """A grid of images titled prediction/actual (green when right, red when wrong)."""
        cells = [(x, f"{z}/{y}", "green" if str(z) == str(y) else "red") for x, y, z in zip(xs, ys, zs)]
        return _grid(cells, figsize, **kwargs)


ImageItemList = ImageList
ImageFileList = ImageList


def _check_args(kwargs: dict[str, Any]) -> None:
    kwargs.pop("tfm_y", None)
    if kwargs:
        raise ConfigError(f"unknown image transform argument(s) {sorted(kwargs)}; "
                          f"accepted: {', '.join(_IMAGE_TFM_ARGS)}")


def _grid(cells: list[tuple[Image, str, str | None]], figsize: tuple[float, float] | None, **kwargs: Any) -> Any:
    import matplotlib.pyplot as plt

    n = len(cells)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=figsize or (3 * cols, 3 * rows), squeeze=False)
    for ax, (img, title, color) in zip(axes.flat, cells):
        img.show(ax=ax, **kwargs)
        ax.set_title(title, color=color or "black", fontsize=10)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def _augment_only(dl: DeviceDataLoader) -> bool:
    """Whether `dl`'s batch steps are only its images' BatchAugment, which always returns images it
    has just made: a step added after them may then overwrite those in place."""
    own = getattr(dl.dataset, "batch_tfms", [])
    return bool(dl.tfms) and all(t in own and isinstance(t, PairTransform) and isinstance(t.fn, BatchAugment)
                                 for t in dl.tfms)


class ImageDataBunch(DataBunch):
    """A DataBunch of images: the course's factories, `normalize`, `denorm`, `show_batch`."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.stats: tuple[list[float], list[float]] | None = None
        self.norm: Normalize | None = None
        self._norm_step: NormalizeBatch | None = None

    # --- normalisation -----------------------------------------------------------------------------
    def normalize(self, stats: tuple[Sequence[float], Sequence[float]] | None = None, do_x: bool = True,
                  do_y: bool = False) -> "ImageDataBunch":
        """Normalise batches with `stats` (mean, std), e.g. `imagenet_stats`; without stats, with
        those of one training batch. Calling it again replaces the previous normalisation."""
        if self._norm_step is not None:
            self.remove_tfm(self._norm_step)
            self._norm_step = None
        if stats is None:
            x, _ = self.one_batch(DatasetType.Train)
            stats = batch_stats(x)
        self.norm = Normalize(*stats)
        self.stats = (list(self.norm.mean), list(self.norm.std))
        self._norm_step = NormalizeBatch(self.norm, do_x, do_y, inplace=all(map(_augment_only, self.dls)))
        self.add_tfm(self._norm_step)
        return self

    def denorm(self, x: Tensor) -> Tensor:
        """Undo `normalize` on a batch (for display)."""
        return self.norm.decode(x) if self.norm is not None else x

    def batch_stats(self, ds_type: DatasetType = DatasetType.Train) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of one (un-normalised) batch."""
        x, _ = self.one_batch(ds_type)
        return batch_stats(self.denorm(x))

    def tta_dl(self, ds_type: DatasetType = DatasetType.Valid) -> DeviceDataLoader:
        """The split's loader with the training batch augmentation (flips, rotations, lighting ...)
        before the normalisation, for test-time augmentation."""
        dl = self.dl(ds_type)
        augment = self.train_ds.batch_tfms
        rest = [t for t in dl.tfms if t not in dl.dataset.batch_tfms]
        return DeviceDataLoader(dl.dl, dl.device, [*augment, *rest], dataset=dl.dataset)

    # --- display ----------------------------------------------------------------------------------
    def show_batch(self, rows: int = 5, ds_type: DatasetType = DatasetType.Train, figsize: tuple | None = None,
                   return_fig: bool = False, **kwargs: Any) -> Any:
        """A `rows` x `rows` grid of one batch, augmented as the model sees it, titled with labels."""
        x, y = self.one_batch(ds_type)
        ll = self.dl(ds_type).dataset
        n = min(rows * rows, len(x))
        xs = [Image(t.clamp(0, 1)) for t in self.denorm(x[:n].float())]
        ys = [ll.y.reconstruct(t) for t in y[:n]]
        fig = ll.x.show_xys(xs, ys, figsize=figsize or (9, 9), **kwargs)
        return fig if return_fig else None

    # --- factories (the course's names) --------------------------------------------------------------
    @classmethod
    def create_from_ll(cls, lls: LabelLists, bs: int = 64, val_bs: int | None = None, ds_tfms: Any = None,
                       num_workers: int | None = None, dl_tfms: Sequence[Callable] | None = None,
                       device: Any = None, test: str | None = None, size: int | tuple[int, int] | None = None,
                       resize_method: str | None = None, padding_mode: str = "reflection", mode: str = "bilinear",
                       tfm_y: bool = False, collate_fn: Callable | None = None, **kwargs: Any) -> "ImageDataBunch":
        """Transform a labelled chain and build its DataBunch (what every factory ends with)."""
        if kwargs:
            raise ConfigError(f"unknown argument(s) {sorted(kwargs)} for an ImageDataBunch factory")
        lls = lls.transform(ds_tfms, size=size, resize_method=resize_method, padding_mode=padding_mode,
                            mode=mode, tfm_y=tfm_y)
        if test is not None:
            lls.add_test_folder(test)
        extra = {"collate_fn": collate_fn} if collate_fn is not None else {}
        return lls.databunch(bs=bs, val_bs=val_bs, num_workers=num_workers, dl_tfms=dl_tfms, device=device, **extra)

    @classmethod
    def from_folder(cls, path: str | os.PathLike, train: str = "train", valid: str = "valid",
                    test: str | None = None, valid_pct: float | None = None, seed: int | None = None,
                    classes: Sequence[Any] | None = None, **kwargs: Any) -> "ImageDataBunch":
        """Labels from folder names: `path/train/<label>/...` and `path/valid/<label>/...`, or with
        `valid_pct`, a random split of everything under `path/train` (`train='.'` for all of `path`)."""
        path = Path(path)
        if valid_pct is None:
            src = ImageList.from_folder(path).split_by_folder(train=train, valid=valid)
        else:
            src = ImageList(ImageList.from_folder(path / train).items, path=path).split_by_rand_pct(valid_pct, seed)
        return cls.create_from_ll(src.label_from_folder(classes=classes), test=test, **kwargs)

    @classmethod
    def from_df(cls, path: str | os.PathLike, df: pd.DataFrame, folder: str | None = None,
                label_delim: str | None = None, valid_pct: float = 0.2, seed: int | None = None,
                fn_col: int | str = 0, label_col: int | str | Sequence = 1, suffix: str = "",
                **kwargs: Any) -> "ImageDataBunch":
        """File names and labels from a DataFrame (`label_delim` for multi-label)."""
        src = (ImageList.from_df(df, path, folder=folder, suffix=suffix, cols=fn_col)
               .split_by_rand_pct(valid_pct, seed)
               .label_from_df(label_delim=label_delim, cols=label_col))
        return cls.create_from_ll(src, **kwargs)

    @classmethod
    def from_csv(cls, path: str | os.PathLike, folder: str | None = None, label_delim: str | None = None,
                 csv_labels: str = "labels.csv", valid_pct: float = 0.2, seed: int | None = None,
                 fn_col: int | str = 0, label_col: int | str | Sequence = 1, suffix: str = "",
                 delimiter: str | None = None, header: Any = "infer", sep: str | None = None,
                 **kwargs: Any) -> "ImageDataBunch":
        """File names and labels from `path/csv_labels` (`sep`/`label_delim` for multi-label)."""
        df = read_csv(Path(path) / csv_labels, header=header, delimiter=delimiter)
        return cls.from_df(path, df, folder=folder, label_delim=label_delim if sep is None else sep,
                           valid_pct=valid_pct, seed=seed, fn_col=fn_col, label_col=label_col, suffix=suffix,
                           **kwargs)

    @classmethod
    def from_lists(cls, path: str | os.PathLike, fnames: Sequence[Any], labels: Sequence[Any],
                   valid_pct: float = 0.2, seed: int | None = None, item_cls: type | None = None,
                   **kwargs: Any) -> "ImageDataBunch":
        """File names and their labels as two lists."""
        fnames, labels = list(fnames), list(labels)
        if len(fnames) != len(labels):
            raise DataError(f"from_lists: {len(fnames)} file names but {len(labels)} labels")
        item_cls = item_cls or ImageList
        label_of = {str(f): l for f, l in zip(fnames, labels)}
        src = item_cls(fnames, path=path).split_by_rand_pct(valid_pct, seed)
        return cls.create_from_ll(src.label_from_func(lambda f: label_of[str(f)]), **kwargs)

    @classmethod
    def from_name_func(cls, path: str | os.PathLike, fnames: Sequence[Any], label_func: Callable[[Any], Any],
                       valid_pct: float = 0.2, seed: int | None = None, **kwargs: Any) -> "ImageDataBunch":
        """Labels from a function of each file name."""
        src = ImageList(list(fnames), path=path).split_by_rand_pct(valid_pct, seed)
        return cls.create_from_ll(src.label_from_func(label_func), **kwargs)

    @classmethod
    def from_name_re(cls, path: str | os.PathLike, fnames: Sequence[Any], pat: str | re.Pattern,
                     valid_pct: float = 0.2, seed: int | None = None, **kwargs: Any) -> "ImageDataBunch":
        """Labels from the first group of a regular expression searched in each file path."""
        src = ImageList(list(fnames), path=path).split_by_rand_pct(valid_pct, seed)
        return cls.create_from_ll(src.label_from_re(pat), **kwargs)

    @classmethod
    def single_from_classes(cls, path: str | os.PathLike, classes: Sequence[Any], ds_tfms: Any = None,
                            **kwargs: Any) -> "ImageDataBunch":
        """An empty DataBunch that knows the classes and transforms: enough for `predict`."""
        if ds_tfms is None and "tfms" in kwargs:  # the course's (v1.0) keyword
            ds_tfms = kwargs.pop("tfms")
        src = ImageList([], path=path).split_none()
        lls = src.label_const(0, label_cls=CategoryList, classes=list(classes))
        return cls.create_from_ll(lls, ds_tfms=ds_tfms, **kwargs)


ImageList._bunch = ImageDataBunch
