"""TabularProcessor: the fitted processors of one dataset, turning rows into the model's two arrays.

`TabularProcessor(cat_names, cont_names, procs).fit(train_df)` runs FillMissing, Categorify and
Normalize on the training rows (in that order, whatever order they were listed in; Categorify is
always applied, since embeddings need indexes). `transform(df)` then gives any rows as
`(codes int64 (n, n_cat), conts float32 (n, n_cont))`, vectorised over whole columns: the tensors a
TabularDataBunch slices batches from, and what `predict` feeds the model for one row.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from deftly.core.errors import ConfigError, DataError
from deftly.tabular.procs import Categorify, FillMissing, Normalize, TabularProc, as_float, check_numeric

__all__ = ["TabularProcessor", "check_columns"]

_ORDER = (FillMissing, Categorify, Normalize)


def check_columns(df: pd.DataFrame, names: Iterable[str], what: str) -> None:
    """A DataError listing the columns of `names` missing from `df`, and the columns it has."""
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise DataError(f"{what}: no column {', '.join(repr(m) for m in missing)} in the table; "
                        f"its columns are {list(df.columns)}")


def _proc_instances(procs: Sequence[Any] | None, cat_names: list[str], cont_names: list[str]) -> list[TabularProc]:
    """The processors to fit, one per kind, in the order FillMissing, Categorify, Normalize."""
    found: dict[type, TabularProc] = {}
    for p in procs or []:
        kind = p if isinstance(p, type) else type(p)
        if not (isinstance(kind, type) and issubclass(kind, TabularProc)):
            raise ConfigError(f"procs must be tabular processors such as FillMissing, Categorify, Normalize; got {p!r}")
        if kind in found:
            raise ConfigError(f"procs lists {kind.__name__} twice")
        if isinstance(p, type):
            inst = p(list(cat_names), list(cont_names))
        else:  # an instance carries settings (e.g. FillMissing(fill_strategy='common')); names come from the data
            inst = p
            inst.cat_names, inst.cont_names = list(cat_names), list(cont_names)
        found[kind] = inst
    if Categorify not in found:
        found[Categorify] = Categorify(list(cat_names), list(cont_names))
    known = [found.pop(k) for k in _ORDER if k in found]
    return known + list(found.values())


class TabularProcessor:
    """Fitted tabular processing: input columns in, `(codes, conts)` arrays out; state is plain data."""

    def __init__(self, cat_names: Sequence[str], cont_names: Sequence[str], procs: Sequence[Any] | None = None):
        cat_names, cont_names = list(cat_names), list(cont_names)
        both = sorted(set(cat_names) & set(cont_names))
        if both:
            raise ConfigError(f"column(s) {both} are listed both in cat_names and in cont_names")
        for kind, names in (("cat_names", cat_names), ("cont_names", cont_names)):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ConfigError(f"{kind} lists {dup} more than once")
        self.input_cat_names, self.input_cont_names = cat_names, cont_names
        self.procs = _proc_instances(procs, cat_names, cont_names)
        self.cat_names, self.cont_names = list(cat_names), list(cont_names)
        self.fitted = False

    # --- fitting and transforming ----------------------------------------------------------------
    def fit(self, df: pd.DataFrame) -> "TabularProcessor":
        """Fit every processor on the training rows `df` (left unchanged)."""
        self.fit_transform(df)
        return self

    def fit_transform(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Fit on the training rows `df` (left unchanged) and return them transformed (see `transform`)."""
        check_columns(df, self.input_cat_names + self.input_cont_names, "tabular data")
        check_numeric(df, self.input_cont_names)
        work = self._columns(df)
        cat_names = list(self.input_cat_names)
        for proc in self.procs:
            proc.cat_names, proc.cont_names = list(cat_names), list(self.input_cont_names)
            proc.fit(work)
            proc.apply(work)
            cat_names = list(proc.cat_names)
        self.cat_names = cat_names
        self.fitted = True
        return self._arrays(work)

    def _columns(self, df: pd.DataFrame) -> pd.DataFrame:
        cols = self.input_cat_names + self.input_cont_names
        return df[cols].reset_index(drop=True)  # copy-on-write: columns are copied only when a proc replaces them

    def _check_no_missing(self, work: pd.DataFrame) -> None:
        for name in self.input_cont_names:
            miss = np.isnan(as_float(work[name]))
            if miss.any():
                raise DataError(f"continuous column {name!r} has {int(miss.sum())} missing values (first at row "
                                f"{int(np.flatnonzero(miss)[0])}); add FillMissing to procs", where=f"column {name!r}")

    def transform(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Rows of `df` as `(codes int64 (n, n_cat), conts float32 (n, n_cont))`; `df` is unchanged."""
        if not self.fitted:
            raise ConfigError("the tabular processor is not fitted yet (fit it on the training rows)")
        check_columns(df, self.input_cat_names + self.input_cont_names, "tabular data")
        work = self._columns(df)
        for proc in self.procs:
            if not isinstance(proc, Categorify):
                proc.apply(work)
        return self._arrays(work)

    def _arrays(self, work: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        if not any(isinstance(p, FillMissing) for p in self.procs):
            self._check_no_missing(work)
        n = len(work)
        cat = self.categorify
        codes = (np.stack([cat.codes(work, c) for c in self.cat_names], 1) if self.cat_names
                 else np.zeros((n, 0), dtype=np.int64))
        conts = (np.stack([as_float(work[c]) for c in self.cont_names], 1).astype(np.float32) if self.cont_names
                 else np.zeros((n, 0), dtype=np.float32))
        return codes, conts

    def transform_row(self, row: Any) -> tuple[np.ndarray, np.ndarray]:
        """One row (a pandas Series, a dict, or a one-row DataFrame) as arrays of shape (1, n)."""
        return self.transform(self._row_frame(row))

    def transform_rows(self, rows: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        """Several rows (each as `transform_row` takes it) as arrays of shape (len(rows), n), in one pass."""
        cols = self.input_cat_names + self.input_cont_names
        frames = [self._row_frame(row, i)[cols] for i, row in enumerate(rows)]
        return self.transform(pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0])

    def _row_frame(self, row: Any, i: int | None = None) -> pd.DataFrame:
        """One row as a one-row DataFrame holding every input column (`i`: its place in a list, for errors)."""
        where = "" if i is None else f"row {i} of the list: "
        if isinstance(row, pd.DataFrame):
            df = row
        elif isinstance(row, pd.Series):
            df = row.to_frame().T.reset_index(drop=True)
        elif isinstance(row, dict):
            df = pd.DataFrame({k: [v] for k, v in row.items()})
        else:
            raise DataError(f"{where}a tabular row must be a pandas Series, a dict or a one-row DataFrame, "
                            f"got {type(row).__name__}")
        if len(df) != 1:
            raise DataError(f"{where}predict takes one row, got {len(df)}")
        missing = [n for n in self.input_cat_names + self.input_cont_names if n not in df.columns]
        if missing:
            raise DataError(f"{where}the row has no value for column(s) {missing}; the model needs "
                            f"{self.input_cat_names + self.input_cont_names}")
        return df

    # --- what the arrays mean ---------------------------------------------------------------------
    @property
    def categorify(self) -> Categorify:
        return next(p for p in self.procs if isinstance(p, Categorify))

    @property
    def normalize(self) -> Normalize | None:
        return next((p for p in self.procs if isinstance(p, Normalize)), None)

    @property
    def classes(self) -> dict[str, list[Any]]:
        """For each categorical column, what each embedding row stands for (`#na#` first)."""
        return {n: self.categorify.classes(n) for n in self.cat_names}

    def decode(self, codes: np.ndarray, conts: np.ndarray) -> pd.DataFrame:
        """Arrays back as a readable table: category names, continuous values in their own units."""
        out: dict[str, Any] = {}
        for j, name in enumerate(self.cat_names):
            classes = np.array(self.categorify.classes(name), dtype=object)
            out[name] = classes[np.clip(codes[:, j], 0, len(classes) - 1)]
        norm = self.normalize
        for j, name in enumerate(self.cont_names):
            values = conts[:, j].astype(np.float64)
            values = norm.decode(name, values) if norm is not None else values
            out[name] = values.astype(np.float32)  # float32 is what the model saw: shown without float noise
        return pd.DataFrame(out)

    # --- plain-data state -------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The fitted processing as JSON-ready plain data (for an exported learner)."""
        if not self.fitted:
            raise ConfigError("the tabular processor is not fitted yet")
        return {"cat_names": list(self.input_cat_names), "cont_names": list(self.input_cont_names),
                "procs": [p.state() for p in self.procs]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "TabularProcessor":
        """Rebuild the fitted processing that `state()` described."""
        proc = cls(state["cat_names"], state["cont_names"], procs=[])
        proc.procs = [TabularProc.from_state(s) for s in state["procs"]]
        proc.cat_names = list(proc.categorify.cat_names)
        proc.fitted = True
        return proc

    def __repr__(self) -> str:
        return (f"TabularProcessor(cat_names={self.cat_names}, cont_names={self.cont_names}, "
                f"procs={[type(p).__name__ for p in self.procs]})")

