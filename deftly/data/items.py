"""Item lists: the inputs and the labels of a dataset, before any split (fastai v1's ItemList family).

An `ItemList` holds raw items (file names, rows, values) and knows how to open one (`raw`), turn it
into a tensor (`encode`) and back into something a user can look at (`reconstruct`). Label lists
(`CategoryList`, `MultiCategoryList`, `FloatList`, `EmptyLabelList`) are item lists of targets.
Applications subclass `ItemList` for their item types (images, texts, rows).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from deftly.core.errors import ConfigError, DataError
from deftly.core.paths import get_files

if TYPE_CHECKING:
    from deftly.data.block import ItemLists


def _to_array(items: Iterable[Any]) -> np.ndarray:
    """Items as a 1-d object array (numpy would make a 2-d array of a list of lists)."""
    items = list(items)
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _index_array(idx: Any, n: int, what: str) -> np.ndarray:
    """Integer indexes from a list, array, range or boolean mask, checked against `n`."""
    a = np.asarray(list(idx) if isinstance(idx, (range, set)) else idx)
    if a.dtype == bool:
        if len(a) != n:
            raise DataError(f"{what}: a boolean mask needs {n} values, got {len(a)}")
        return np.nonzero(a)[0]
    a = a.astype(np.int64).reshape(-1)
    bad = a[(a < -n) | (a >= n)]
    if len(bad):
        raise DataError(f"{what}: index {int(bad[0])} is out of range for {n} items")
    return a % n if n else a


class ItemList:
    """A list of raw items with a `path`; indexing with an int opens one item, with a slice, list
    of indexes or mask gives a new list (v1 semantics).

    Subclasses override `raw` (open an item), `encode` (to a tensor), `reconstruct` (tensor to a
    displayable object) and, for inputs, `item_transform`/`batch_transforms`.
    """

    #: the DataBunch class `.databunch()` builds (applications set their own)
    _bunch: type | None = None
    #: what kind of target this list is, when used as labels ('category', 'mask', ...)
    kind: str | None = None
    #: which default loss the learner takes for these labels (see deftly.train.losses.default_loss)
    loss_kind: str | None = None

    def __init__(self, items: Iterable[Any], path: str | os.PathLike = ".", inner_df: pd.DataFrame | None = None,
                 **kwargs: Any):
        self.items = items if isinstance(items, np.ndarray) and items.dtype == object else _to_array(items)
        self.path = Path(path)
        self.inner_df = inner_df
        self._kwargs = kwargs  # settings a subclass wants copied into `new` lists

    # --- the list -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, idx: Any) -> Any:
        if isinstance(idx, (int, np.integer)):
            n = len(self)
            if not -n <= idx < n:
                raise IndexError(f"index {idx} is out of range for {type(self).__name__} of {n} items")
            return self.get(int(idx) % n)
        idxs = np.arange(len(self))[idx] if isinstance(idx, slice) else _index_array(idx, len(self), "indexing")
        return self.new(self.items[idxs], inner_df=self._df_rows(idxs))

    def _df_rows(self, idxs: np.ndarray) -> pd.DataFrame | None:
        return None if self.inner_df is None else self.inner_df.iloc[idxs].reset_index(drop=True)

    def new(self, items: Iterable[Any], **kwargs: Any) -> "ItemList":
        """A list of the same class and settings holding other items."""
        settings = {"path": self.path, "inner_df": None, **self._kwargs, **kwargs}
        return type(self)(items, **settings)

    # --- one item -------------------------------------------------------------------------------
    def raw(self, i: int) -> Any:
        """Item `i` opened (e.g. a decoded picture); the default is the item itself."""
        return self.items[i]

    def get(self, i: int) -> Any:
        """Item `i` as users see it (what `il[i]` returns)."""
        return self.reconstruct(self.encode(self.raw(i)))

    def encode(self, raw: Any) -> Tensor:
        """An opened item as the tensor the model reads."""
        return torch.as_tensor(raw)

    def reconstruct(self, t: Tensor) -> Any:
        """A tensor back as a displayable object."""
        return t

    def from_object(self, obj: Any) -> Any:
        """A user's object (for `predict`) as what `raw` would return."""
        return obj

    def item_transform(self, tfms: Sequence[Any] | None, train: bool, y_kind: str | None = None,
                       tfm_y: bool = False, **kwargs: Any) -> Callable | None:
        """The per-item step (runs in the DataLoader workers): `(raw_x, raw_y) -> (x_tensor, y)`."""
        if tfms or kwargs.get("size") is not None:
            raise ConfigError(f"{type(self).__name__} has no transforms; remove the tfms/size arguments")
        return None

    def batch_transforms(self, tfms: Sequence[Any] | None, train: bool, y_kind: str | None = None,
                         tfm_y: bool = False, **kwargs: Any) -> list[Callable]:
        """The per-batch steps, run on the device: each `(x, y) -> (x, y)`."""
        return []

    def describe(self, i: int) -> str:
        """A short text for item `i` (reprs and `summary`)."""
        return str(self.get(i))

    def __repr__(self) -> str:
        shown = ",".join(self.describe(i) for i in range(min(5, len(self))))
        return f"{type(self).__name__} ({len(self)} items)\n{shown}\nPath: {self.path}"

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def from_folder(cls, path: str | os.PathLike = ".", extensions: Iterable[str] | None = None,
                    recurse: bool = True, include: Iterable[str] | None = None, presort: bool = False,
                    **kwargs: Any) -> "ItemList":
        """Every file under `path` (recursively; only the first-level folders in `include` if given)."""
        path = Path(path)
        files = get_files(path, extensions, recurse=recurse, include=include)
        return cls(files, path=path, **kwargs)

    @classmethod
    def from_df(cls, df: pd.DataFrame, path: str | os.PathLike = ".", cols: int | str | Sequence = 0,
                folder: str | os.PathLike | None = None, suffix: str = "", **kwargs: Any) -> "ItemList":
        """Items from column(s) `cols` of `df` (names or positions); the DataFrame is kept for
        `label_from_df` and `split_from_df`. With `folder` or `suffix`, items are files
        `path/folder/<value><suffix>`, and every one must exist."""
        if not isinstance(df, pd.DataFrame):
            raise DataError(f"from_df needs a pandas DataFrame, got {type(df).__name__}")
        df = df.reset_index(drop=True)
        values = _df_values(df, cols)
        path = Path(path)
        if folder is not None or suffix:
            base = path / folder if folder is not None else path
            values = [base / f"{v}{suffix}" for v in values]
        return cls(values, path=path, inner_df=df, **kwargs)

    @classmethod
    def from_csv(cls, path: str | os.PathLike, csv_name: str, cols: int | str | Sequence = 0,
                 delimiter: str | None = None, header: Any = "infer", **kwargs: Any) -> "ItemList":
        """Items from a CSV file `path/csv_name` (see `from_df`)."""
        file = Path(path) / csv_name
        df = read_csv(file, delimiter=delimiter, header=header)
        return cls.from_df(df, path=path, cols=cols, **kwargs)

    # --- filtering -------------------------------------------------------------------------------
    def filter_by_func(self, func: Callable[[Any], bool]) -> "ItemList":
        """Keep only the items for which `func(item)` is True (v1)."""
        keep = np.array([bool(func(o)) for o in self.items], dtype=bool)
        return self[keep] if len(self) else self

    def filter_by_folder(self, include: Iterable[str] | None = None,
                         exclude: Iterable[str] | None = None) -> "ItemList":
        """Keep items whose first folder under `path` is in `include` and not in `exclude`."""
        include = set(include) if include is not None else None
        exclude = set(exclude or [])

        def first_folder(o: Any) -> str:
            return _relative(o, self.path).parts[0]

        keep = np.array([(include is None or first_folder(o) in include) and first_folder(o) not in exclude
                         for o in self.items], dtype=bool)
        return self[keep] if len(self) else self

    def filter_by_rand(self, p: float, seed: int | None = None) -> "ItemList":
        """Keep each item with probability `p` (a quick subsample)."""
        rng = np.random.default_rng(seed) if seed is not None else np.random
        return self[rng.uniform(size=len(self)) < p]

    # --- splitting (each returns ItemLists) ------------------------------------------------------
    def split_by_list(self, train: "ItemList", valid: "ItemList") -> "ItemLists":
        from deftly.data.block import ItemLists
        return ItemLists(self.path, train, valid)

    def split_by_idxs(self, train_idx: Any, valid_idx: Any) -> "ItemLists":
        """Train and valid given by their indexes."""
        t = _index_array(train_idx, len(self), "split_by_idxs(train_idx)")
        v = _index_array(valid_idx, len(self), "split_by_idxs(valid_idx)")
        return self.split_by_list(self[t], self[v])

    def split_by_idx(self, valid_idx: Any) -> "ItemLists":
        """The items at `valid_idx` are the validation set."""
        v = _index_array(valid_idx, len(self), "split_by_idx")
        train = np.ones(len(self), dtype=bool)
        train[v] = False  # a mask, not np.setdiff1d: no sort of every index
        return self.split_by_idxs(np.flatnonzero(train), v)

    def split_by_valid_func(self, func: Callable[[Any], bool]) -> "ItemLists":
        """The items for which `func(item)` is True are the validation set."""
        mask = np.array([bool(func(o)) for o in self.items], dtype=bool)
        return self.split_by_idxs(np.nonzero(~mask)[0], np.nonzero(mask)[0])

    def split_by_folder(self, train: str = "train", valid: str = "valid") -> "ItemLists":
        """Split by the first folder under `path` (`path/train/...` vs `path/valid/...`)."""
        folders = [_relative(o, self.path).parts[0] for o in self.items]
        t = [i for i, f in enumerate(folders) if f == train]
        v = [i for i, f in enumerate(folders) if f == valid]
        if not t:
            found = sorted(set(folders))[:8]
            raise DataError(f"split_by_folder: no item under the folder '{train}' of {self.path} "
                            f"(first folders found: {found})")
        return self.split_by_idxs(t, v)

    def split_by_rand_pct(self, valid_pct: float = 0.2, seed: int | None = None) -> "ItemLists":
        """A random `valid_pct` of the items is the validation set (`seed` makes it repeatable)."""
        if not 0 <= valid_pct < 1:
            raise ConfigError(f"valid_pct must be in [0, 1), got {valid_pct}")
        rng = np.random.default_rng(seed) if seed is not None else np.random
        order = rng.permutation(len(self))
        cut = int(valid_pct * len(self))
        return self.split_by_idxs(order[cut:], order[:cut])

    random_split_by_pct = split_by_rand_pct

    def split_subsets(self, train_size: float, valid_size: float, seed: int | None = None) -> "ItemLists":
        """Random train and valid subsets of the given fractions (to iterate fast on less data)."""
        if train_size + valid_size > 1:
            raise ConfigError("split_subsets: train_size + valid_size must be at most 1")
        rng = np.random.default_rng(seed) if seed is not None else np.random
        order = rng.permutation(len(self))
        n_valid, n_train = int(valid_size * len(self)), int(train_size * len(self))
        return self.split_by_idxs(order[n_valid:n_valid + n_train], order[:n_valid])

    def split_by_files(self, valid_names: Iterable[str]) -> "ItemLists":
        """The items whose file name is in `valid_names` are the validation set."""
        names = {Path(str(n)).name for n in valid_names}
        return self.split_by_valid_func(lambda o: Path(str(o)).name in names)

    def split_by_fname_file(self, fname: str | os.PathLike, path: str | os.PathLike | None = None) -> "ItemLists":
        """The files named (one per line) in `path/fname` are the validation set."""
        file = Path(path if path is not None else self.path) / fname
        if not file.is_file():
            raise DataError("split_by_fname_file: no such file", where=str(file))
        return self.split_by_files(line.strip() for line in file.read_text().splitlines() if line.strip())

    def split_from_df(self, col: int | str = 2) -> "ItemLists":
        """The rows where column `col` of the DataFrame is True are the validation set."""
        if self.inner_df is None:
            raise ConfigError("split_from_df needs a list made with from_df or from_csv")
        values = _df_values(self.inner_df, col)
        mask = np.array([_truthy(v, i, col) for i, v in enumerate(values)], dtype=bool)
        return self.split_by_idxs(np.nonzero(~mask)[0], np.nonzero(mask)[0])

    def split_none(self) -> "ItemLists":
        """No validation set."""
        return self.split_by_list(self, self[np.zeros(len(self), dtype=bool)] if len(self) else self.new([]))

    no_split = split_none

    # --- labels of each item (used by ItemLists' label_from_* methods) -------------------------
    def labels_from_func(self, func: Callable[[Any], Any]) -> list[Any]:
        return [func(o) for o in self.items]

    def labels_from_folder(self) -> list[str]:
        return [Path(str(o)).parent.name for o in self.items]

    def labels_from_re(self, pat: str | re.Pattern, full_path: bool = False) -> list[str]:
        rx = re.compile(pat)
        labels = []
        for i, o in enumerate(self.items):
            s = (self.path / o).as_posix() if full_path else (o.as_posix() if isinstance(o, Path) else str(o))
            m = rx.search(s)
            if m is None:
                raise DataError(f"the pattern {rx.pattern!r} does not match item {i} ({s!r})")
            if not m.groups():
                raise ConfigError(f"the pattern {rx.pattern!r} needs one group in parentheses that captures the label")
            labels.append(m.group(1))
        return labels

    def labels_from_df(self, cols: int | str | Sequence = 1) -> list[Any]:
        if self.inner_df is None:
            raise ConfigError("label_from_df needs a list made with from_df or from_csv")
        return _df_values(self.inner_df, cols)


def _relative(o: Any, path: Path) -> Path:
    p = Path(str(o))
    try:
        return p.relative_to(path)
    except ValueError:
        return p


def _truthy(v: Any, i: int, col: Any) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "1", "0"):
        return v.strip().lower() in ("true", "1")
    raise DataError(f"split_from_df: column {col!r}, row {i}: expected True/False, got {v!r}")


def _df_values(df: pd.DataFrame, cols: int | str | Sequence) -> list[Any]:
    """The values of one column (a list) or of several (a list of arrays, one per row)."""
    many = isinstance(cols, (list, tuple, np.ndarray, pd.Index)) and len(cols) != 1
    names = list(cols) if isinstance(cols, (list, tuple, np.ndarray, pd.Index)) else [cols]
    picked = []
    for c in names:
        if isinstance(c, (int, np.integer)) and c not in df.columns:
            if not -df.shape[1] <= c < df.shape[1]:
                raise DataError(f"column {c} does not exist: the table has {df.shape[1]} columns {list(df.columns)}")
            picked.append(df.columns[c])
        elif c in df.columns:
            picked.append(c)
        else:
            raise DataError(f"no column {c!r} in the table (columns: {list(df.columns)})")
    if many:
        return list(df[picked].to_numpy())
    return df[picked[0]].tolist()


def read_csv(file: Path, **kwargs: Any) -> pd.DataFrame:
    """pandas.read_csv with a clear error naming the file."""
    if not file.is_file():
        raise DataError("no such CSV file", where=str(file))
    if kwargs.get("delimiter", "") is None:
        kwargs.pop("delimiter")
    try:
        df = pd.read_csv(file, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read the CSV file ({e})", where=str(file)) from e
    df.attrs["source"] = str(file)  # so errors about its rows can name the file
    return df


# --- labels --------------------------------------------------------------------------------------
class Category:
    """One class label: `obj` is the label, `data` its index in `classes` (v1's Category)."""

    def __init__(self, data: Tensor | int, obj: Any):
        self.data, self.obj = torch.as_tensor(data), obj

    def __str__(self) -> str:
        return str(self.obj)

    def __repr__(self) -> str:
        return f"Category {self.obj}"

    def __eq__(self, other: Any) -> bool:
        return self.obj == (other.obj if isinstance(other, Category) else other)

    def __hash__(self) -> int:
        return hash(self.obj)


class MultiCategory:
    """Several labels: `obj` the list of labels, `data` the one-hot float tensor."""

    def __init__(self, data: Tensor, obj: list[Any]):
        self.data, self.obj = data, obj

    def __str__(self) -> str:
        return ";".join(str(o) for o in self.obj)

    def __repr__(self) -> str:
        return f"MultiCategory {self}"


class FloatItem:
    """A regression target (one or several floats)."""

    def __init__(self, data: Tensor):
        self.data = data
        self.obj = data.tolist()

    def __str__(self) -> str:
        return str(self.obj if self.data.ndim else round(float(self.data), 4))

    def __repr__(self) -> str:
        return f"FloatItem {self}"


class CategoryList(ItemList):
    """Single-label classification targets; `classes` is the sorted list of labels seen in training
    (or the one you pass). Labels outside `classes` get code -1 and are dropped when labelling."""

    kind = "category"
    loss_kind = "cross_entropy"

    def __init__(self, items: Iterable[Any], classes: Sequence[Any] | None = None, **kwargs: Any):
        super().__init__(items, **kwargs)
        if classes is None:
            classes = _sorted_unique(self.items)
        self.classes = list(classes)
        self._kwargs["classes"] = self.classes
        index = {c: i for i, c in enumerate(self.classes)}
        self.codes = np.array([index.get(o, -1) for o in self.items], dtype=np.int64)

    @property
    def c(self) -> int:
        return len(self.classes)

    def unknown(self) -> np.ndarray:
        """Indexes of items whose label is not in `classes`."""
        return np.nonzero(self.codes < 0)[0]

    def raw(self, i: int) -> int:
        return int(self.codes[i])

    def encode(self, raw: Any) -> Tensor:
        return torch.tensor(raw, dtype=torch.long)

    def reconstruct(self, t: Tensor) -> Category:
        i = int(t)
        return Category(i, self.classes[i] if 0 <= i < len(self.classes) else None)

    def analyze_pred(self, pred: Tensor) -> Tensor:
        """The predicted class index from the model's probabilities."""
        return pred.argmax(dim=-1)

    def describe(self, i: int) -> str:
        return str(self.items[i])


class MultiCategoryList(CategoryList):
    """Multi-label targets: each item is a list of labels (or a string split on `label_delim`);
    with `one_hot=True` items are already 0/1 vectors over `classes`."""

    kind = "multicategory"
    loss_kind = "bce"

    def __init__(self, items: Iterable[Any], classes: Sequence[Any] | None = None, label_delim: str | None = None,
                 one_hot: bool = False, **kwargs: Any):
        items = list(items)
        if one_hot:
            if classes is None:
                raise ConfigError("one-hot labels need classes= (the names of the columns)")
            items = [[c for c, v in zip(classes, row) if v] for row in items]
        elif label_delim is not None:
            items = [[] if _missing(o) else [s for s in str(o).split(label_delim) if s] for o in items]
        else:
            items = [[] if _missing(o) else (list(o) if isinstance(o, (list, tuple, set, np.ndarray)) else [o])
                     for o in items]
        if classes is None:
            classes = _sorted_unique(label for labels in items for label in labels)
        ItemList.__init__(self, items, **kwargs)
        self.classes = list(classes)
        self._kwargs["classes"] = self.classes
        index = {c: i for i, c in enumerate(self.classes)}
        self.codes = _to_array([[index.get(label, -1) for label in labels] for labels in items])

    def unknown(self) -> np.ndarray:
        return np.array([i for i, codes in enumerate(self.codes) if any(c < 0 for c in codes)], dtype=np.int64)

    def raw(self, i: int) -> list[int]:
        return list(self.codes[i])

    def encode(self, raw: Any) -> Tensor:
        t = torch.zeros(len(self.classes))
        t[torch.as_tensor(raw, dtype=torch.long)] = 1.0
        return t

    def reconstruct(self, t: Tensor) -> MultiCategory:
        return MultiCategory(t, [self.classes[i] for i in torch.nonzero(t > 0.5).flatten().tolist()])

    def analyze_pred(self, pred: Tensor, thresh: float = 0.5) -> Tensor:
        return (pred >= thresh).float()

    def describe(self, i: int) -> str:
        return ";".join(str(o) for o in self.items[i])


class FloatList(ItemList):
    """Regression targets (floats, or rows of floats); `log=True` trains on their logarithm."""

    kind = "float"
    loss_kind = "mse"

    def __init__(self, items: Iterable[Any], log: bool = False, classes: Any = None, **kwargs: Any):
        super().__init__(items, **kwargs)
        self.log = log
        self._kwargs["log"] = log
        try:
            values = np.array([np.asarray(o, dtype=np.float32) for o in self.items], dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise DataError(f"FloatList: labels must be numbers ({e})") from e
        if log:
            if (values <= 0).any():
                i = int(np.nonzero((values <= 0).reshape(len(values), -1).any(1))[0][0])
                raise DataError(f"FloatList(log=True): item {i} is {self.items[i]!r}; a logarithm needs values > 0")
            values = np.log(values)
        self.values = values
        self.c = 1 if values.ndim == 1 else int(np.prod(values.shape[1:]))

    def raw(self, i: int) -> np.ndarray:
        return self.values[i]

    def encode(self, raw: Any) -> Tensor:
        return torch.as_tensor(raw, dtype=torch.float32)

    def reconstruct(self, t: Tensor) -> FloatItem:
        return FloatItem(t)

    def analyze_pred(self, pred: Tensor) -> Tensor:
        return pred

    def describe(self, i: int) -> str:
        return str(self.items[i])


class EmptyLabelList(ItemList):
    """The labels of an unlabelled (test) set: every target is 0."""

    kind = None

    def raw(self, i: int) -> int:
        return 0

    def encode(self, raw: Any) -> Tensor:
        return torch.tensor(0)

    def describe(self, i: int) -> str:
        return "EmptyLabel"


def _missing(o: Any) -> bool:
    return o is None or (isinstance(o, float) and np.isnan(o))


def _sorted_unique(labels: Iterable[Any]) -> list[Any]:
    unique = set(labels)
    try:
        return sorted(unique)
    except TypeError:  # mixed types: sort by their text
        return sorted(unique, key=str)


def label_cls_for(labels: Sequence[Any], label_cls: type | None = None, label_delim: str | None = None) -> type:
    """Which label list fits `labels` (v1's rule): multi-label with a delimiter or lists, floats
    for regression, categories otherwise."""
    if label_cls is not None:
        return label_cls
    if label_delim is not None:
        return MultiCategoryList
    first = next((o for o in labels if not _missing(o)), None)
    if isinstance(first, (list, tuple, set)):
        return MultiCategoryList
    if isinstance(first, np.ndarray) and first.ndim > 0:
        return FloatList if np.issubdtype(first.dtype, np.floating) else MultiCategoryList
    if isinstance(first, (float, np.floating)):
        return FloatList
    return CategoryList
