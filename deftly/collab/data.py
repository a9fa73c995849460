"""CollabDataBunch: a ratings table as tensors, once; a batch is `((users, items), ratings)`, a slice.

User and item ids are categorified on the training split as v1's `Categorify` does: index 0 is
`#na#` (missing ids, and ids seen only in the validation or test rows), then the training ids in
sorted order. `data.classes` is `{user_name: [...], item_name: [...]}`, as v1's.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from deftly.core.device import to_device
from deftly.core.errors import ConfigError, DataError
from deftly.data.databunch import DataBunch, DatasetType
from deftly.data.items import FloatList
from deftly.data.tensors import TensorBatches, tensor_loader
from deftly.train.layers import emb_sz_rule

__all__ = ["CollabDataBunch", "CollabDataset", "NA"]

#: The class of missing and unseen ids (index 0), as v1's Categorify names it.
NA = "#na#"


class CollabDataset(TensorBatches):
    """One split: user codes, item codes and ratings as aligned tensors, plus the training classes."""

    def __init__(self, users: Tensor, items: Tensor, ratings: Tensor, classes: dict[str, list],
                 names: tuple[str, str, str]):
        super().__init__((users, items), ratings)
        self.classes, self.names, self.c = classes, names, 1

    def frame(self, idx: Tensor | slice | None = None, preds: Tensor | None = None) -> pd.DataFrame:
        """Rows as a table with the original ids (and predictions, if given): for show_batch/results."""
        users, items = self.x
        sel = slice(None) if idx is None else idx
        user_name, item_name, _ = self.names
        df = pd.DataFrame({user_name: _decode(self.classes[user_name], users[sel]),
                           item_name: _decode(self.classes[item_name], items[sel]),
                           "target": self.y[sel].numpy().round(4)})
        if preds is not None:
            df["prediction"] = preds.reshape(len(df), -1)[:, 0].numpy().round(4)
        return df


class _Decoder:
    """What `Learner.predict` decodes a rating with: `.y` is a (float) label list."""

    def __init__(self) -> None:
        self.y = FloatList([])


def _decode(classes: list, codes: Tensor) -> list:
    return [classes[int(c)] for c in codes]


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python number it holds (for messages: 7, not np.int64(7))."""
    return value.item() if isinstance(value, np.generic) else value


def _check_column(df: pd.DataFrame, name: Any, role: str) -> None:
    if name not in df.columns:
        have = ", ".join(repr(c) for c in df.columns)
        raise DataError(f"the {role} column {name!r} is not in the ratings frame; its columns are {have}")


def _ratings(col: pd.Series, name: Any, what: str = "ratings frame") -> np.ndarray:
    """The rating column as float32, or a DataError naming the bad values and their rows."""
    values = pd.to_numeric(col, errors="coerce")
    bad = values.isna() & col.notna()
    if bad.any():
        rows = list(col.index[bad][:5])
        shown = ", ".join(repr(v) for v in col[bad].iloc[:5].tolist())
        raise DataError(f"the rating column {name!r} of the {what} must hold numbers; {int(bad.sum())} value(s) "
                        f"are not, e.g. {shown} in rows {rows}", where=f"column {name!r}")
    missing = values.isna()
    if missing.any():
        raise DataError(f"the rating column {name!r} of the {what} has {int(missing.sum())} missing (NaN) value(s), "
                        f"in rows {list(col.index[missing][:5])}: drop or fill them first", where=f"column {name!r}")
    out = values.to_numpy(dtype=np.float64)
    inf = ~np.isfinite(out)
    if inf.any():
        raise DataError(f"the rating column {name!r} of the {what} has infinite value(s) in rows "
                        f"{list(col.index[inf][:5])}", where=f"column {name!r}")
    return out.astype(np.float32)


def _categories(col: pd.Series) -> pd.Index:
    """The distinct non-missing ids of a (training) column, sorted when they can be compared."""
    cats = pd.Index(pd.unique(col.dropna()))
    try:
        return cats.sort_values()
    except TypeError:  # ids of mixed types: keep their order of appearance
        return cats


def _codes(index: pd.Index, values: Any) -> np.ndarray:
    """Codes of `values` in classes [#na#, *index]: 0 for missing or unknown ids (vectorised)."""
    return index.get_indexer(pd.Index(values)) + 1


class CollabDataBunch(DataBunch):
    """DataBunch for collaborative filtering: inputs (user codes, item codes), target the rating."""

    @classmethod
    def from_df(cls, ratings: pd.DataFrame, pct_val: float = 0.2, user_name: Any = None, item_name: Any = None,
                rating_name: Any = None, test: pd.DataFrame | None = None, seed: int | None = None,
                path: str | os.PathLike = ".", bs: int = 64, val_bs: int | None = None,
                device: torch.device | str | None = None, valid_pct: float | None = None) -> "CollabDataBunch":
        """Users, items and ratings from the first three columns of `ratings` (or the named ones);
        a random `pct_val` of the rows is the validation set (with `seed`, the same rows as v1's
        `np.random.seed(seed)` split, without touching numpy's global state), and
        `data.train_idx` / `data.valid_idx` say which rows went where. `valid_pct` is the later v1
        name of `pct_val`. `test` rows are coded with the training ids; their rating is optional."""
        if not isinstance(ratings, pd.DataFrame):
            raise DataError(f"CollabDataBunch.from_df needs a pandas DataFrame of ratings, got {type(ratings).__name__}")
        if len(ratings) == 0:
            raise DataError(f"the ratings frame is empty (columns {list(ratings.columns)}): there is nothing to train on")
        pct = pct_val if valid_pct is None else valid_pct
        if not 0 <= pct < 1:
            raise ConfigError(f"pct_val must be in [0, 1), got {pct}")
        if bs < 1:
            raise DataError(f"bs must be a positive batch size, got {bs}")
        cols = list(ratings.columns)
        if (user_name is None or item_name is None or rating_name is None) and len(cols) < 3:
            raise DataError(f"the ratings frame needs user, item and rating columns (the first three by default); "
                            f"it has only {cols}")
        names = (cols[0] if user_name is None else user_name, cols[1] if item_name is None else item_name,
                 cols[2] if rating_name is None else rating_name)
        for name, role in zip(names, ("user", "item", "rating")):
            _check_column(ratings, name, role)
        if len(set(names)) < 3:
            raise ConfigError(f"the user, item and rating columns must be three different columns, got {names}")
        y = _ratings(ratings[names[2]], names[2])

        n = len(ratings)
        # v1's split_by_rand_pct: np.random.seed(seed) then permutation; a private RandomState draws
        # the same rows without touching numpy's global state
        rng = np.random.RandomState(seed) if seed is not None else np.random
        order = rng.permutation(n)
        cut = int(pct * n)
        train_idx, valid_idx = order[cut:], order[:cut]
        if len(train_idx) == 0:
            raise DataError(f"no training rows are left after holding out pct_val={pct} of {n}")

        index, classes = {}, {}
        for name in names[:2]:
            index[name] = _categories(ratings[name].iloc[train_idx])
            classes[name] = [NA, *index[name].tolist()]
        codes = {name: torch.from_numpy(_codes(index[name], ratings[name].to_numpy()).astype(np.int64))
                 for name in names[:2]}
        y_t = torch.from_numpy(y)

        def split(idx: np.ndarray) -> CollabDataset:
            i = torch.from_numpy(idx)
            return CollabDataset(codes[names[0]][i], codes[names[1]][i], y_t[i], classes, names)

        train_ds = split(train_idx)
        valid_ds = split(valid_idx) if len(valid_idx) else None
        test_ds = cls._test_set(test, index, classes, names) if test is not None else None
        val_bs = val_bs or bs
        train_dl = tensor_loader(train_ds, bs, shuffle=True, drop_last=len(train_ds) > bs)
        valid_dl = tensor_loader(valid_ds, val_bs) if valid_ds is not None else None
        test_dl = tensor_loader(test_ds, val_bs) if test_ds is not None else None
        bunch = cls(train_dl, valid_dl, test_dl, device=device, path=path, c=1)
        bunch._index = index
        bunch.train_idx, bunch.valid_idx = train_idx, valid_idx  # row positions in `ratings`
        return bunch

    @classmethod
    def single_from_classes(cls, classes: Mapping[Any, Sequence[Any]], names: Sequence[Any],
                            path: str | os.PathLike = ".", device: torch.device | str | None = None) -> "CollabDataBunch":
        """An empty DataBunch that knows the user and item classes (`#na#` first, as `data.classes`)
        and the (user, item, rating) column names: enough for `predict` (what `load_learner` builds)."""
        names = tuple(names)
        if len(names) != 3:
            raise ConfigError(f"names must be the (user, item, rating) columns, got {names!r}")
        index, lists = {}, {}
        for name in names[:2]:
            values = list(classes[name])
            if not values or values[0] != NA:
                raise ConfigError(f"the classes of {name!r} must start with {NA!r}, as data.classes does")
            index[name], lists[name] = pd.Index(values[1:]), values
        empty = torch.zeros(0, dtype=torch.long)
        train_ds = CollabDataset(empty, empty.clone(), torch.zeros(0), lists, names)
        bunch = cls(tensor_loader(train_ds, 1), None, device=device, path=path, c=1)
        bunch._index = index
        bunch.train_idx = bunch.valid_idx = np.zeros(0, dtype=np.int64)
        return bunch

    @staticmethod
    def _test_set(test: pd.DataFrame, index: dict[str, pd.Index], classes: dict[str, list],
                  names: tuple[str, str, str]) -> CollabDataset:
        """Test rows coded with the training classes (unseen ids become #na#, as in v1); the
        rating column is optional there."""
        if not isinstance(test, pd.DataFrame) or len(test) == 0:
            raise DataError("test must be a non-empty DataFrame with the user and item columns")
        for name, role in zip(names[:2], ("user", "item")):
            _check_column(test, name, role)
        users, items = (torch.from_numpy(_codes(index[nm], test[nm].to_numpy()).astype(np.int64)) for nm in names[:2])
        y = (_ratings(test[names[2]], names[2], "test frame") if names[2] in test.columns
             else np.zeros(len(test), dtype=np.float32))
        return CollabDataset(users, items, torch.from_numpy(y), classes, names)

    # --- what the rest of deftly asks a DataBunch ------------------------------------------------
    @property
    def names(self) -> tuple[str, str, str]:
        """(user column, item column, rating column)."""
        return self.train_ds.names

    @property
    def user_name(self) -> Any:
        """The user column."""
        return self.names[0]

    @property
    def item_name(self) -> Any:
        """The item column."""
        return self.names[1]

    @property
    def rating_name(self) -> Any:
        """The rating column."""
        return self.names[2]

    @property
    def loss_kind(self) -> str:
        """Ratings are regression targets: mean squared error (v1's FloatList)."""
        return "mse"

    @property
    def label_list(self) -> _Decoder:
        """What `Learner.predict` decodes a rating with (a float label list)."""
        return _Decoder()

    def get_emb_szs(self, sz_dict: dict[str, int] | None = None) -> list[tuple[int, int]]:
        """(number of classes, width) for users then items: v1's rule unless `sz_dict` names a width."""
        sz_dict = sz_dict or {}
        return [(len(self.classes[n]), sz_dict.get(n, emb_sz_rule(len(self.classes[n])))) for n in self.names[:2]]

    # --- ids <-> codes ----------------------------------------------------------------------------
    def codes(self, ids: Any, is_item: bool = True) -> Tensor:
        """The embedding rows of original user or item ids (e.g. titles); a DataError names the
        ids that are not among the training classes."""
        name = self.item_name if is_item else self.user_name
        values = np.asarray([ids] if np.ndim(ids) == 0 else list(ids), dtype=object)
        codes = _codes(self._index[name], values) if len(values) else np.zeros(0, dtype=np.int64)
        missing = values[codes == 0]
        if len(missing):
            kind = "item" if is_item else "user"
            shown = ", ".join(repr(_plain(v)) for v in missing[:5].tolist()) + (" ..." if len(missing) > 5 else "")
            raise DataError(f"{len(missing)} {kind} id(s) not among the {len(self.classes[name]) - 1} {kind}s of the "
                            f"training set (column {name!r}): {shown}. An id only in the validation rows has no "
                            f"trained embedding.", where=f"column {name!r}")
        return torch.from_numpy(codes.astype(np.int64))

    def one_item(self, item: Any) -> tuple[tuple[Tensor, Tensor], Tensor]:
        """A batch of one (user, item) pair for `predict`: a row (Series or dict with the user and
        item columns, as v1 takes `df.iloc[i]`) or a pair `(user_id, item_id)`."""
        return self.items_batch([item])

    def items_batch(self, items: Sequence[Any]) -> tuple[tuple[Tensor, Tensor], Tensor]:
        """One batch of several (user, item) pairs or rows (for `predict` on a list)."""
        pairs = [self._pair(item) for item in items]
        users = self.codes([u for u, _ in pairs], is_item=False)
        its = self.codes([i for _, i in pairs], is_item=True)
        device = None if self.device.type == "cpu" else self.device
        return to_device(((users, its), torch.zeros(len(pairs))), device)

    def is_item_list(self, item: Any) -> bool:
        """A list of pairs or rows is several items; a list of two ids is one pair (user, item)."""
        return isinstance(item, list) and not (len(item) == 2 and not any(_is_pair(o) for o in item))

    def _pair(self, item: Any) -> tuple[Any, Any]:
        """(user id, item id) of a row or a pair."""
        if isinstance(item, (pd.Series, Mapping)):
            for name, role in zip(self.names[:2], ("user", "item")):
                if name not in item:
                    raise DataError(f"predict: the row has no {role} column {name!r}; it has {list(item.keys())}")
            return item[self.user_name], item[self.item_name]
        if _is_pair(item) and len(item) == 2:
            return item[0], item[1]
        raise DataError(f"predict needs a (user, item) pair or a row with columns {self.user_name!r} and "
                        f"{self.item_name!r}, got {item!r}")

    # --- display ------------------------------------------------------------------------------------
    def show_batch(self, rows: int = 5, ds_type: DatasetType = DatasetType.Train, **kwargs: Any) -> None:
        """The first `rows` rows of a batch as a table: user, item (original ids) and target."""
        (users, items), y = self.one_batch(ds_type)
        ds = self.dl(ds_type).dataset
        n = min(rows, len(y))
        view = CollabDataset(users[:n], items[:n], y[:n], ds.classes, ds.names)
        _show_table(view.frame())


def _is_pair(o: Any) -> bool:
    """Whether `o` can be a (user, item) pair or row rather than one id."""
    return isinstance(o, (pd.Series, Mapping)) or (isinstance(o, Sequence) and not isinstance(o, (str, bytes)))


def _show_table(df: pd.DataFrame) -> None:
    """An HTML table in a notebook, plain text elsewhere."""
    from deftly.train.progress import in_notebook

    if in_notebook():
        from IPython.display import HTML, display

        display(HTML(df.to_html(index=False)))
    else:
        print(df.to_string(index=False))
