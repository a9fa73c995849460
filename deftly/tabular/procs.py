"""Tabular processors (v1's `FillMissing`, `Categorify`, `Normalize`): fitted once on the training
rows, then applied unchanged to validation, test and single rows at predict time.

A processor is constructed with the column names (`FillMissing(cat_names, cont_names)`), learns its
state from the training frame and keeps it as plain data (lists, numbers, strings), so `state()` can
be written to JSON and `from_state` rebuilds it without pickling. Called as in the course,
`proc(df)` fits on `df` and transforms it in place, `proc(df, test=True)` only transforms.
"""
from __future__ import annotations

import math
from enum import Enum
from typing import Any, Iterable

import numpy as np
import pandas as pd

from deftly.core.errors import ConfigError, DataError

__all__ = ["Categorify", "FillMissing", "FillStrategy", "Normalize", "TabularProc", "check_numeric", "plain"]

#: The name Categorify gives to missing and unseen categories (index 0 of every embedding).
NA = "#na#"


def plain(value: Any) -> Any:
    """A numpy/pandas scalar as the plain Python value JSON understands (floats stay floats)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def _show(values: Iterable[Any], k: int = 5) -> str:
    vals = list(values)
    shown = ", ".join(repr(plain(v)) for v in vals[:k])
    return shown + (", ..." if len(vals) > k else "")


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def check_numeric(df: pd.DataFrame, cont_names: Iterable[str]) -> None:
    """A DataError naming each continuous column that holds text, with the offending values and rows."""
    for name in cont_names:
        col = df[name]
        if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            continue
        as_num = pd.to_numeric(col, errors="coerce")
        bad = as_num.isna() & col.notna()
        if bad.any():
            rows = np.flatnonzero(bad.to_numpy())
            values = pd.unique(col[bad])
            raise DataError(f"continuous column {name!r} holds values that are not numbers: {_show(values)} "
                            f"({_rows(int(bad.sum()))}, first at row {int(rows[0])}); clean them or list the column "
                            "in cat_names", where=f"column {name!r}")


def as_float(col: pd.Series) -> np.ndarray:
    """A numeric (or numeric-text, or bool) column as a new writable float64 array, NaN where missing."""
    if pd.api.types.is_bool_dtype(col):
        return col.to_numpy(dtype=np.float64, copy=True)
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan, copy=True)


class TabularProc:
    """Base class: `fit(df)` learns state from the training rows, `apply(df)` transforms any rows
    in place; both return what they act on. Subclasses list their fitted attributes in `_state`."""

    _state: tuple[str, ...] = ()

    def __init__(self, cat_names: Iterable[str] | None = None, cont_names: Iterable[str] | None = None):
        self.cat_names = list(cat_names or [])
        self.cont_names = list(cont_names or [])
        self.fitted = False

    def __call__(self, df: pd.DataFrame, test: bool = False) -> pd.DataFrame:
        """The course's call: fit on `df` and transform it in place (`test=True`: transform only)."""
        if not test:
            self.fit(df)
        return self.apply(df)

    def fit(self, df: pd.DataFrame) -> "TabularProc":
        raise NotImplementedError

    def apply(self, df: pd.DataFrame) -> pd.DataFrame:
        raise NotImplementedError

    def _need_fit(self) -> None:
        if not self.fitted:
            raise ConfigError(f"{type(self).__name__} has not been fitted: call it on the training rows first")

    # --- plain-data state ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild this fitted processor, as JSON-ready plain data."""
        self._need_fit()
        out = {"name": type(self).__name__, "cat_names": list(self.cat_names), "cont_names": list(self.cont_names)}
        out.update({k: getattr(self, k) for k in self._state})
        return out

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "TabularProc":
        """The fitted processor `state()` described (the class is chosen by `state['name']`)."""
        kind = _PROCS.get(state.get("name", ""))
        if kind is None or not issubclass(kind, cls):
            raise ConfigError(f"unknown tabular processor {state.get('name')!r}; known: {sorted(_PROCS)}")
        proc = kind.__new__(kind)
        TabularProc.__init__(proc, state["cat_names"], state["cont_names"])
        proc._configure(state)
        for k in kind._state:
            setattr(proc, k, state[k])
        proc.fitted = True
        return proc

    def _configure(self, state: dict[str, Any]) -> None:
        """Set the constructor settings (not fitted state) from a state dict."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(cat_names={self.cat_names}, cont_names={self.cont_names})"


class FillStrategy(str, Enum):
    """How FillMissing replaces a missing continuous value (v1's names)."""

    MEDIAN = "median"
    COMMON = "common"
    CONSTANT = "constant"


class FillMissing(TabularProc):
    """Missing continuous values become the training median (or most common value, or `fill_val`);
    with `add_col`, a boolean `<col>_na` column marks them and joins the categorical names.

    Columns without missing values in training get no `_na` column; a missing value there at
    validation, test or predict time is an error (v1), since the model never saw one.
    """

    _state = ("na_dict",)

    def __init__(self, cat_names: Iterable[str] | None = None, cont_names: Iterable[str] | None = None,
                 fill_strategy: FillStrategy | str = FillStrategy.MEDIAN, add_col: bool = True, fill_val: float = 0.0):
        super().__init__(cat_names, cont_names)
        self.fill_strategy = FillStrategy(fill_strategy)
        self.add_col, self.fill_val = add_col, float(fill_val)
        self.na_dict: dict[str, float] = {}

    def _configure(self, state: dict[str, Any]) -> None:
        self.fill_strategy = FillStrategy(state["fill_strategy"])
        self.add_col, self.fill_val = bool(state["add_col"]), float(state["fill_val"])

    def state(self) -> dict[str, Any]:
        return {**super().state(), "fill_strategy": self.fill_strategy.value, "add_col": self.add_col,
                "fill_val": self.fill_val}

    def _filler(self, values: np.ndarray) -> float:
        present = values[~np.isnan(values)]
        if self.fill_strategy is FillStrategy.CONSTANT or len(present) == 0:
            return self.fill_val
        if self.fill_strategy is FillStrategy.MEDIAN:
            return float(np.median(present))
        uniq, counts = np.unique(present, return_counts=True)
        return float(uniq[np.argmax(counts)])

    def fit(self, df: pd.DataFrame) -> "FillMissing":
        check_numeric(df, self.cont_names)
        self.na_dict = {}
        for name in self.cont_names:
            values = as_float(df[name])
            if np.isnan(values).any():
                self.na_dict[name] = self._filler(values)
        if self.add_col:
            self.cat_names += [f"{n}_na" for n in self.na_dict if f"{n}_na" not in self.cat_names]
        self.fitted = True
        return self

    def apply(self, df: pd.DataFrame) -> pd.DataFrame:
        self._need_fit()
        check_numeric(df, self.cont_names)
        for name in self.cont_names:
            values = as_float(df[name])
            missing = np.isnan(values)
            if name in self.na_dict:
                if self.add_col:
                    df[f"{name}_na"] = missing
                values[missing] = self.na_dict[name]
                df[name] = values
            elif missing.any():
                rows = np.flatnonzero(missing)
                raise DataError(f"continuous column {name!r} has missing values ({_rows(len(rows))}, first at row "
                                f"{int(rows[0])}) but had none in the training set, so FillMissing learned no "
                                "value for it; fill them yourself", where=f"column {name!r}")
        return df


class Categorify(TabularProc):
    """Categorical columns become pandas categories with the training set's values (sorted); the
    model reads `code + 1`, so index 0 is `#na#`: missing values and values never seen in training."""

    _state = ("categories",)

    def __init__(self, cat_names: Iterable[str] | None = None, cont_names: Iterable[str] | None = None):
        super().__init__(cat_names, cont_names)
        self.categories: dict[str, list[Any]] = {}

    def fit(self, df: pd.DataFrame) -> "Categorify":
        self.categories = {}
        for name in self.cat_names:
            cats = pd.Categorical(df[name]).categories
            self.categories[name] = [plain(c) for c in cats]
        self.fitted = True
        return self

    def classes(self, name: str) -> list[Any]:
        """What each embedding row of column `name` stands for: `#na#` then the training categories."""
        return [NA, *self.categories[name]]

    def apply(self, df: pd.DataFrame) -> pd.DataFrame:
        self._need_fit()
        for name in self.cat_names:
            cats = pd.Index(self.categories[name])
            df[name] = pd.Categorical.from_codes(_codes(cats, df[name]), categories=cats, ordered=True)
        return df

    def codes(self, df: pd.DataFrame, name: str) -> np.ndarray:
        """The embedding indexes (0 = `#na#`) of column `name` of `df`, categorified or not."""
        col = df[name]
        if isinstance(col.dtype, pd.CategoricalDtype) and list(col.cat.categories) == self.categories[name]:
            codes = col.cat.codes.to_numpy()
        else:
            codes = _codes(pd.Index(self.categories[name]), col)
        return np.asarray(codes, dtype=np.int64) + 1


def _codes(categories: pd.Index, col: pd.Series) -> np.ndarray:
    """Position of each value of `col` in `categories`; -1 for missing and never-seen values."""
    if isinstance(col.dtype, pd.CategoricalDtype):  # map the column's own categories, then its codes
        mapping = categories.get_indexer(col.cat.categories)
        codes = col.cat.codes.to_numpy()
        return np.where(codes >= 0, mapping[np.maximum(codes, 0)], -1)
    return categories.get_indexer(col)


class Normalize(TabularProc):
    """Continuous columns minus their training mean, divided by their training standard deviation."""

    _state = ("means", "stds")

    def __init__(self, cat_names: Iterable[str] | None = None, cont_names: Iterable[str] | None = None):
        super().__init__(cat_names, cont_names)
        self.means: dict[str, float] = {}
        self.stds: dict[str, float] = {}

    def fit(self, df: pd.DataFrame) -> "Normalize":
        check_numeric(df, self.cont_names)
        self.means, self.stds = {}, {}
        for name in self.cont_names:
            values = as_float(df[name])
            if np.isnan(values).any():
                raise DataError(f"continuous column {name!r} has missing values: put FillMissing before Normalize "
                                "in procs", where=f"column {name!r}")
            mean = float(values.mean()) if len(values) else 0.0
            std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            self.means[name], self.stds[name] = mean, (std if math.isfinite(std) else 0.0)
        self.fitted = True
        return self

    def apply(self, df: pd.DataFrame) -> pd.DataFrame:
        self._need_fit()
        for name in self.cont_names:
            df[name] = (as_float(df[name]) - self.means[name]) / (1e-7 + self.stds[name])
        return df

    def decode(self, name: str, values: np.ndarray) -> np.ndarray:
        """Normalised values of column `name` back in the column's own units."""
        return values * (1e-7 + self.stds[name]) + self.means[name]


_PROCS: dict[str, type[TabularProc]] = {p.__name__: p for p in (FillMissing, Categorify, Normalize)}
