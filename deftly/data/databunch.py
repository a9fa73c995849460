"""DataBunch: the train/valid/test torch DataLoaders of one task, and what is known about them."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data import default_collate

from deftly.core.device import defaults
from deftly.core.errors import DataError
from deftly.core.seed import seed_worker


class DatasetType(Enum):
    """Which split a call is about (v1 name)."""

    Train = 1
    Valid = 2
    Test = 3


def _length(ds: Any, name: str) -> int:
    try:
        n = len(ds)
    except TypeError as e:
        raise DataError(f"the {name} dataset has no length: {type(ds).__name__} must define __len__") from e
    if n == 0:
        raise DataError(f"the {name} dataset is empty: there is nothing to {'train on' if name == 'training' else 'evaluate'}")
    return n


class DataBunch:
    """Holds `train_dl`, `valid_dl` and optionally `test_dl` (plain torch DataLoaders).

    The Learner moves each batch to `device`; a batch is `(x, y)` where x or y may be a tuple of
    tensors (several model inputs, several targets).
    """

    def __init__(self, train_dl: DataLoader, valid_dl: DataLoader | None, test_dl: DataLoader | None = None,
                 device: torch.device | str | None = None, path: str | Path = ".",
                 classes: Sequence[Any] | None = None, c: int | None = None):
        self.train_dl, self.valid_dl, self.test_dl = train_dl, valid_dl, test_dl
        self.device = torch.device(device) if device is not None else defaults.device
        self.path = Path(path)
        self.classes = list(classes) if classes is not None else getattr(train_dl.dataset, "classes", None)
        if c is None:
            c = getattr(train_dl.dataset, "c", None)
        if c is None and self.classes is not None:
            c = len(self.classes)
        self.c = c

    @classmethod
    def create(cls, train_ds: Dataset, valid_ds: Dataset | None, test_ds: Dataset | None = None,
               path: str | Path = ".", bs: int = 64, val_bs: int | None = None,
               num_workers: int | None = None, device: torch.device | str | None = None,
               collate_fn: Callable = default_collate, shuffle: bool = True, drop_last: bool | None = None,
               classes: Sequence[Any] | None = None, c: int | None = None, **dl_kwargs: Any) -> "DataBunch":
        """Build the DataLoaders: the training one shuffles and drops its last partial batch (v1).

        `drop_last` defaults to True only when the training set holds more than `bs` items, so a
        tiny set still yields a batch.
        """
        if bs < 1:
            raise DataError(f"bs must be a positive batch size, got {bs}")
        n_train = _length(train_ds, "training")
        if valid_ds is not None:
            _length(valid_ds, "validation")
        num_workers = defaults.num_workers if num_workers is None else num_workers
        if drop_last is None:
            drop_last = n_train > bs
        loader = dict(num_workers=num_workers, collate_fn=collate_fn,
                      worker_init_fn=seed_worker if num_workers > 0 else None,
                      persistent_workers=num_workers > 0, **dl_kwargs)
        val_bs = val_bs or bs
        train_dl = DataLoader(train_ds, bs, shuffle=shuffle, drop_last=drop_last, **loader)
        valid_dl = DataLoader(valid_ds, val_bs, shuffle=False, **loader) if valid_ds is not None else None
        test_dl = DataLoader(test_ds, val_bs, shuffle=False, **loader) if test_ds is not None else None
        return cls(train_dl, valid_dl, test_dl, device=device, path=path, classes=classes, c=c)

    @property
    def train_ds(self) -> Dataset:
        return self.train_dl.dataset

    @property
    def valid_ds(self) -> Dataset | None:
        return self.valid_dl.dataset if self.valid_dl is not None else None

    @property
    def test_ds(self) -> Dataset | None:
        return self.test_dl.dataset if self.test_dl is not None else None

    @property
    def batch_size(self) -> int:
        return self.train_dl.batch_size

    def dl(self, ds_type: DatasetType = DatasetType.Valid) -> DataLoader:
        """The DataLoader of one split; a clear error if that split does not exist."""
        dl = {DatasetType.Train: self.train_dl, DatasetType.Valid: self.valid_dl,
              DatasetType.Test: self.test_dl}[ds_type]
        if dl is None:
            raise DataError(f"this DataBunch has no {ds_type.name.lower()} set")
        return dl

    def one_batch(self, ds_type: DatasetType = DatasetType.Train) -> tuple[Any, Any]:
        """The first batch of a split, on the CPU (for inspection and `show_batch`)."""
        return next(iter(self.dl(ds_type)))

    def __repr__(self) -> str:
        parts = [f"{name}: {len(dl.dataset)} items" for name, dl in
                 (("train", self.train_dl), ("valid", self.valid_dl), ("test", self.test_dl)) if dl is not None]
        return f"{type(self).__name__}({'; '.join(parts)}; bs={self.batch_size}; device={self.device})"
