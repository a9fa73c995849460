"""Tabular data: `TabularList` for the data block API and `TabularDataBunch` (v1 names).

    (TabularList.from_df(df, path, cat_names=cat_names, cont_names=cont_names, procs=procs)
        .split_by_idx(valid_idx).label_from_df(cols=dep_var).add_test(test).databunch(bs=64))

Splitting fits the processors on the training rows and turns every split into two arrays once
(category indexes, continuous values); the DataBunch makes them tensors and a batch is a slice
`((x_cat, x_cont), y)` of them (`deftly.data.tensors`), never a collation of per-row objects.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from deftly.core.device import defaults
from deftly.core.errors import ConfigError, DataError
from deftly.data.block import ItemLists, LabelList, LabelLists
from deftly.data.databunch import DataBunch, DatasetType, DeviceDataLoader
from deftly.data.items import CategoryList, EmptyLabelList, FloatList, ItemList, MultiCategoryList
from deftly.data.tensors import TensorBatches, tensor_loader
from deftly.tabular.processor import TabularProcessor, check_columns
from deftly.tabular.procs import check_numeric

__all__ = ["TabularDataBunch", "TabularLabelList", "TabularLine", "TabularList", "show_table"]


def show_table(df: pd.DataFrame) -> None:
    """Show a table: rendered in a notebook, printed in a terminal."""
    from deftly.train.progress import in_notebook

    if in_notebook():
        from IPython.display import display

        display(df)
    else:
        print(df.to_string())


class TabularLine:
    """One processed row: its category indexes and continuous values (`data`), shown decoded."""

    def __init__(self, cats: Tensor, conts: Tensor, processor: TabularProcessor):
        self.cats, self.conts, self.processor = cats, conts, processor

    @property
    def data(self) -> tuple[Tensor, Tensor]:
        return self.cats, self.conts

    def to_frame(self) -> pd.DataFrame:
        """This row as a one-row table of category names and values in the columns' own units."""
        return self.processor.decode(self.cats.reshape(1, -1).numpy(), self.conts.reshape(1, -1).numpy())

    def __str__(self) -> str:
        row = self.to_frame().iloc[0]
        return "; ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())

    def __repr__(self) -> str:
        return f"TabularLine {self}"


class TabularList(ItemList):
    """The rows of a DataFrame with their categorical and continuous column names and processors.

    Unprocessed until split: each split (`split_by_idx`, `split_by_rand_pct`, `split_none`, ...)
    fits a `TabularProcessor` on the training rows and processes train and valid with it; a test
    list given to `add_test` is processed with the same processor. `il[i]` is a `TabularLine`.
    """

    kind = "tabular"

    def __init__(self, items: Iterable[Any], cat_names: Sequence[str] | None = None,
                 cont_names: Sequence[str] | None = None, procs: Sequence[Any] | None = None, **kwargs: Any):
        super().__init__(np.empty(0, dtype=object), **kwargs)
        self.items = np.asarray(list(items) if not isinstance(items, (np.ndarray, range)) else items, dtype=np.int64)
        self.cat_names, self.cont_names = list(cat_names or []), list(cont_names or [])
        self.procs = list(procs) if procs is not None else None
        self._kwargs.update(cat_names=self.cat_names, cont_names=self.cont_names, procs=self.procs)
        self.processor: TabularProcessor | None = None
        self.codes: np.ndarray | None = None
        self.conts: np.ndarray | None = None

    @classmethod
    def from_df(cls, df: pd.DataFrame, cat_names: Sequence[str] | None = None, cont_names: Sequence[str] | None = None,
                procs: Sequence[Any] | None = None, path: str | os.PathLike = ".", **kwargs: Any) -> "TabularList":
        """The rows of `df`; `cat_names` become embeddings, `cont_names` go in as numbers."""
        if not isinstance(df, pd.DataFrame):
            raise DataError(f"TabularList.from_df needs a pandas DataFrame, got {type(df).__name__}")
        if len(df) == 0:
            raise DataError(f"the table is empty (0 rows; columns {list(df.columns)}): there is nothing to learn from")
        cat_names, cont_names = list(cat_names or []), list(cont_names or [])
        check_columns(df, cat_names + cont_names, "TabularList.from_df")
        check_numeric(df, cont_names)
        df = df.reset_index(drop=True)
        return cls(np.arange(len(df)), cat_names=cat_names, cont_names=cont_names, procs=procs, path=path,
                   inner_df=df, **kwargs)

    # --- processing --------------------------------------------------------------------------------
    @property
    def is_processed(self) -> bool:
        return self.processor is not None

    def processed(self, processor: TabularProcessor, arrays: tuple[np.ndarray, np.ndarray] | None = None) -> "TabularList":
        """A copy of this list processed by the fitted `processor` (its names are the processor's)."""
        if self.inner_df is None:
            raise ConfigError("a TabularList needs its rows: build it with TabularList.from_df")
        out = self.new(self.items, inner_df=self.inner_df, cat_names=processor.cat_names,
                       cont_names=processor.cont_names)
        out.processor = processor
        out.codes, out.conts = arrays if arrays is not None else processor.transform(self.inner_df)
        return out

    def _need_processed(self) -> TabularProcessor:
        if self.processor is None:
            raise ConfigError("this TabularList is not processed yet: split it first (e.g. split_by_idx), which fits "
                              "the processors on the training rows")
        return self.processor

    def split_by_list(self, train: "TabularList", valid: "TabularList") -> ItemLists:
        """Fit the processors on `train`'s rows and process both lists with them."""
        processor = TabularProcessor(self.cat_names, self.cont_names, self.procs)
        arrays = processor.fit_transform(train.inner_df)
        return ItemLists(self.path, train.processed(processor, arrays), valid.processed(processor))

    # --- the list --------------------------------------------------------------------------------
    def __getitem__(self, idx: Any) -> Any:
        if isinstance(idx, (int, np.integer)):
            return super().__getitem__(idx)
        idxs = np.arange(len(self))[idx] if isinstance(idx, slice) else _indexes(idx, len(self))
        out = self.new(self.items[idxs], inner_df=self._df_rows(idxs))
        if self.processor is not None:
            out.processor, out.codes, out.conts = self.processor, self.codes[idxs], self.conts[idxs]
        return out

    def raw(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        self._need_processed()
        return self.codes[i], self.conts[i]

    def encode(self, raw: tuple[np.ndarray, np.ndarray]) -> tuple[Tensor, Tensor]:
        codes, conts = raw
        return torch.as_tensor(codes, dtype=torch.long), torch.as_tensor(conts, dtype=torch.float32)

    def reconstruct(self, t: tuple[Tensor, Tensor]) -> TabularLine:
        return TabularLine(t[0], t[1], self._need_processed())

    def from_object(self, obj: Any) -> tuple[np.ndarray, np.ndarray]:
        """A row (Series, dict or one-row DataFrame) processed like the training rows."""
        codes, conts = self._need_processed().transform_row(obj)
        return codes[0], conts[0]

    def describe(self, i: int) -> str:
        if self.processor is None:
            row = self.inner_df.iloc[i]
            return "; ".join(f"{n} {row[n]}" for n in self.cat_names + self.cont_names)
        return str(self.get(i))

    def tensors(self) -> tuple[Tensor, Tensor]:
        """All rows as `(x_cat int64 (n, n_cat), x_cont float32 (n, n_cont))`, sharing memory with the arrays."""
        self._need_processed()
        return torch.from_numpy(self.codes), torch.from_numpy(self.conts)

    # --- labels ------------------------------------------------------------------------------------
    def labels_from_df(self, cols: int | str | Sequence = 1) -> list[Any]:
        """The dependent variable(s); an input column or a missing value there is a DataError."""
        if self.inner_df is None:
            raise ConfigError("label_from_df needs a list made with TabularList.from_df")
        names = list(cols) if isinstance(cols, (list, tuple, np.ndarray, pd.Index)) else [cols]
        names = [self.inner_df.columns[c] if isinstance(c, (int, np.integer)) and c not in self.inner_df.columns
                 and -self.inner_df.shape[1] <= c < self.inner_df.shape[1] else c for c in names]
        check_columns(self.inner_df, names, "label_from_df")
        inputs = set(self.cat_names) | set(self.cont_names)
        if self.processor is not None:
            inputs |= set(self.processor.input_cat_names) | set(self.processor.input_cont_names)
        leak = [n for n in names if n in inputs]
        if leak:
            raise DataError(f"the dependent variable {leak} is also an input (cat_names/cont_names): the model would "
                            "see the answer; remove it from the inputs")
        for name in names:
            missing = self.inner_df[name].isna().to_numpy()
            if missing.any():
                rows = self.items[np.flatnonzero(missing)]
                raise DataError(f"the dependent variable {name!r} is missing in {int(missing.sum())} rows (rows "
                                f"{', '.join(str(int(r)) for r in rows[:5])}{', ...' if len(rows) > 5 else ''}); drop "
                                "or fill those rows first", where=f"column {name!r}")
        return super().labels_from_df(names if len(names) > 1 else names[0])


def _indexes(idx: Any, n: int) -> np.ndarray:
    """Integer row indexes from a list, array, range or boolean mask (checked against `n`)."""
    a = np.asarray(list(idx) if isinstance(idx, (range, set)) else idx)
    if a.dtype == bool:
        if len(a) != n:
            raise DataError(f"a boolean mask needs {n} values, got {len(a)}")
        return np.flatnonzero(a)
    a = a.astype(np.int64).reshape(-1)
    if len(a) and (a.min() < -n or a.max() >= n):
        raise DataError(f"row index out of range for {n} rows")
    return a % n if n else a


class TabularLabelList(LabelList):
    """A labelled tabular split; its names and processor are its inputs' (v1's `data.train_ds.cont_names`)."""

    @property
    def cat_names(self) -> list[str]:
        return list(self.x.cat_names)

    @property
    def cont_names(self) -> list[str]:
        return list(self.x.cont_names)

    @property
    def processor(self) -> TabularProcessor | None:
        return self.x.processor


TabularList.label_list_cls = TabularLabelList


def _label_tensor(y: ItemList) -> Tensor:
    """All targets of a label list as one tensor (no per-row objects for the usual kinds)."""
    if isinstance(y, MultiCategoryList):
        return torch.stack([y.encode(y.raw(i)) for i in range(len(y))]) if len(y) else torch.zeros(0, y.c)
    if isinstance(y, CategoryList):
        return torch.from_numpy(np.ascontiguousarray(y.codes, dtype=np.int64))
    if isinstance(y, FloatList):
        return torch.from_numpy(np.ascontiguousarray(y.values, dtype=np.float32))
    if isinstance(y, EmptyLabelList):
        return torch.zeros(len(y), dtype=torch.long)
    return torch.stack([y.encode(y.raw(i)) for i in range(len(y))])


class TabularDataBunch(DataBunch):
    """A DataBunch of tables: batches `((x_cat, x_cont), y)` sliced from tensors made once."""

    @classmethod
    def from_label_lists(cls, lls: LabelLists, path: str | os.PathLike | None = None, bs: int = 64,
                         val_bs: int | None = None, num_workers: int | None = None,
                         device: torch.device | str | None = None, collate_fn: Callable | None = None,
                         dl_tfms: Sequence[Callable] | None = None, **kwargs: Any) -> "TabularDataBunch":
        """The loaders of a labelled tabular chain (`num_workers` and `collate_fn` are not used:
        slicing a tensor is cheaper than any worker or collation)."""
        if kwargs:
            raise ConfigError(f"unknown argument(s) {sorted(kwargs)} for a TabularDataBunch")
        if bs < 1:
            raise DataError(f"bs must be a positive batch size, got {bs}")
        if not isinstance(lls.train.x, TabularList) or not lls.train.x.is_processed:
            raise ConfigError("TabularDataBunch needs a split TabularList (TabularList.from_df(...).split_by_...)")
        processor = lls.train.x.processor
        if lls.test is not None and lls.test.x.processor is not processor:
            if not isinstance(lls.test.x, TabularList):
                raise ConfigError("add_test needs a TabularList (TabularList.from_df(test_df, ...))")
            lls.test = type(lls.train)(lls.test.x.processed(processor), lls.test.y)
        if len(lls.train) == 0:
            raise DataError("the training set is empty: there is nothing to train on")
        device = torch.device(device) if device is not None else defaults.device
        on = None if device.type == "cpu" else device
        val_bs = val_bs or bs

        def make(ll: LabelList | None, size: int, train: bool) -> DeviceDataLoader | None:
            if ll is None or (len(ll) == 0 and not train):
                return None
            (cats, conts), y = ll.x.tensors(), _label_tensor(ll.y)
            ds = TensorBatches((cats.to(device), conts.to(device)), y.to(device))
            dl = tensor_loader(ds, size, shuffle=train, drop_last=train and len(ll) > size)
            return DeviceDataLoader(dl, on, list(dl_tfms or []), dataset=ll)

        bunch = cls(make(lls.train, bs, True), make(lls.valid, val_bs, False), make(lls.test, val_bs, False),
                    device=device, path=path if path is not None else lls.path)
        bunch.single_ds = lls.valid
        return bunch

    @classmethod
    def from_df(cls, path: str | os.PathLike, df: pd.DataFrame, dep_var: str, valid_idx: Any,
                procs: Sequence[Any] | None = None, cat_names: Sequence[str] | None = None,
                cont_names: Sequence[str] | None = None, classes: Sequence[Any] | None = None,
                test_df: pd.DataFrame | None = None, bs: int = 64, val_bs: int | None = None,
                num_workers: int | None = None, dl_tfms: Sequence[Callable] | None = None,
                device: torch.device | str | None = None, label_cls: type | None = None,
                **kwargs: Any) -> "TabularDataBunch":
        """v1's factory: `valid_idx` rows validate, `dep_var` is the target; without `cont_names`,
        every column that is not categorical nor the target is continuous."""
        if not isinstance(df, pd.DataFrame):
            raise DataError(f"TabularDataBunch.from_df needs a pandas DataFrame, got {type(df).__name__}")
        cat_names = list(cat_names or [])
        check_columns(df, [dep_var], "TabularDataBunch.from_df (dep_var)")
        if cont_names is None:
            cont_names = [c for c in df.columns if c not in cat_names and c != dep_var]
        src = (TabularList.from_df(df, cat_names=cat_names, cont_names=cont_names, procs=procs, path=path)
               .split_by_idx(valid_idx))
        label_kwargs = dict(kwargs)
        if classes is not None:
            label_kwargs["classes"] = list(classes)
        lls = src.label_from_df(cols=dep_var, label_cls=label_cls, **label_kwargs)
        if test_df is not None:
            lls.add_test(TabularList.from_df(test_df, cat_names=cat_names, cont_names=cont_names, procs=procs,
                                             path=path))
        return lls.databunch(path=path, bs=bs, val_bs=val_bs, num_workers=num_workers, dl_tfms=dl_tfms,
                             device=device)

    # --- what the model needs ----------------------------------------------------------------------
    @property
    def processor(self) -> TabularProcessor:
        return self.train_ds.x.processor

    @property
    def cat_names(self) -> list[str]:
        return list(self.processor.cat_names)

    @property
    def cont_names(self) -> list[str]:
        return list(self.processor.cont_names)

    def get_emb_szs(self, sz_dict: dict[str, int] | None = None) -> list[tuple[int, int]]:
        """(number of values incl. `#na#`, width) per categorical column: v1's rule unless `sz_dict` says."""
        from deftly.train.layers import emb_sz_rule

        sz_dict = dict(sz_dict or {})
        unknown = sorted(set(sz_dict) - set(self.cat_names))
        if unknown:
            raise ConfigError(f"emb_szs names {unknown}, which are not categorical columns; they are {self.cat_names}")
        classes = self.processor.classes
        return [(len(classes[n]), int(sz_dict.get(n, emb_sz_rule(len(classes[n]))))) for n in self.cat_names]

    def one_item(self, item: Any) -> tuple[Any, Tensor]:
        """A batch of one row processed with the fitted processors (for `predict`): no DataLoader."""
        return self._rows_batch(*self.processor.transform_row(item))

    def items_batch(self, items: Sequence[Any]) -> tuple[Any, Tensor]:
        """One batch of several rows (Series, dicts or one-row DataFrames), processed together."""
        return self._rows_batch(*self.processor.transform_rows(items))

    def _rows_batch(self, codes: np.ndarray, conts: np.ndarray) -> tuple[Any, Tensor]:
        dev = self.train_dl.device
        x = (torch.from_numpy(codes), torch.from_numpy(conts))
        if dev is not None:
            x = tuple(t.to(dev) for t in x)
        return x, torch.zeros(len(codes), dtype=torch.long)

    # --- display -----------------------------------------------------------------------------------
    def decode_batch(self, x: tuple[Tensor, Tensor], y: Tensor | None, ds_type: DatasetType = DatasetType.Train,
                     n: int | None = None) -> pd.DataFrame:
        """Rows of a batch as a readable table (category names, continuous values in their units,
        the decoded target)."""
        cats, conts = (t.detach().cpu() for t in x)
        n = len(cats) if n is None else min(n, len(cats))
        df = self.processor.decode(cats[:n].numpy(), conts[:n].numpy())
        ll = self.dl(ds_type).dataset
        if y is not None and not isinstance(ll.y, EmptyLabelList):
            df["target"] = [str(ll.y.reconstruct(t)) for t in y.detach().cpu()[:n]]
        return df

    def show_batch(self, rows: int = 10, ds_type: DatasetType = DatasetType.Train,
                   return_df: bool = False, **kwargs: Any) -> pd.DataFrame | None:
        """`rows` rows of one batch, decoded: shown (or returned, with `return_df`)."""
        x, y = self.one_batch(ds_type)
        df = self.decode_batch(x, y, ds_type, rows)
        if return_df:
            return df
        show_table(df)
        return None


TabularList._bunch = TabularDataBunch
