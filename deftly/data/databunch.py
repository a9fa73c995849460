"""DataBunch: the train/valid/test torch DataLoaders of one task, and what is known about them."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler
from torch.utils.data import default_collate

from deftly.core.device import defaults, to_cpu, to_device
from deftly.core.errors import DataError
from deftly.core.seed import seed_worker
from deftly.data.tensors import BatchIndexSampler, tensor_loader


class DatasetType(Enum):
    """Which split a call is about (v1 name)."""

    Train = 1
    Valid = 2
    Test = 3
    #: the training set in order, every item once (no shuffling, last batch kept), with the
    #: training transforms: predictions line up with `data.train_ds`
    Fix = 4


def _length(ds: Any, name: str) -> int:
    try:
        n = len(ds)
    except TypeError as e:
        raise DataError(f"the {name} dataset has no length: {type(ds).__name__} must define __len__") from e
    if n == 0:
        raise DataError(f"the {name} dataset is empty: there is nothing to {'train on' if name == 'training' else 'evaluate'}")
    return n


BatchTransform = Callable[[Any], Any]


class DeviceDataLoader:
    """A torch DataLoader whose batches arrive on `device` with batch transforms applied (v1 name).

    Batch transforms (augmentation, normalisation) are callables `batch -> batch` run after the
    move to the device, so they are vectorised tensor ops on whole batches. `dataset` is what users
    index (e.g. a LabelList that returns Images); the wrapped loader may read a leaner view of it.
    """

    def __init__(self, dl: DataLoader, device: torch.device | None = None,
                 tfms: Sequence[BatchTransform] | None = None, dataset: Any = None):
        self.dl = dl
        self.device = device
        self.tfms: list[BatchTransform] = list(tfms or [])
        self._dataset = dataset

    @property
    def dataset(self) -> Any:
        return self._dataset if self._dataset is not None else self.dl.dataset

    @property
    def batch_size(self) -> int:
        sampler = self.dl.sampler
        if isinstance(sampler, BatchIndexSampler):
            return sampler.bs
        # a dataset that yields whole batches (batch_size=None) says its own batch size
        return self.dl.batch_size if self.dl.batch_size is not None else getattr(self.dl.dataset, "bs", None)

    @property
    def num_workers(self) -> int:
        return self.dl.num_workers

    def __len__(self) -> int:
        return len(self.dl)

    def __iter__(self):
        for batch in self.dl:
            yield self.process(batch)

    def process(self, batch: Any) -> Any:
        """Move a batch to the device and apply the batch transforms (what iterating does)."""
        batch = to_device(batch, self.device)
        for tfm in self.tfms:
            batch = tfm(batch)
        return batch

    def add_tfm(self, tfm: BatchTransform) -> None:
        self.tfms.append(tfm)

    def remove_tfm(self, tfm: BatchTransform) -> None:
        if tfm in self.tfms:
            self.tfms.remove(tfm)

    def new(self, **kwargs: Any) -> "DeviceDataLoader":
        """A copy with some DataLoader arguments changed (e.g. `shuffle=False`, `batch_size=1`)."""
        dl = self.dl
        if isinstance(dl.sampler, BatchIndexSampler):
            s = dl.sampler
            args = dict(bs=s.bs, shuffle=s.shuffle, drop_last=s.drop_last)
            args.update({"bs" if k == "batch_size" else k: v for k, v in kwargs.items() if k != "num_workers"})
            return DeviceDataLoader(tensor_loader(dl.dataset, **args), self.device, self.tfms, self._dataset)
        args = dict(batch_size=dl.batch_size, shuffle=isinstance(dl.sampler, RandomSampler),
                    drop_last=dl.drop_last, num_workers=dl.num_workers, collate_fn=dl.collate_fn,
                    worker_init_fn=dl.worker_init_fn, pin_memory=dl.pin_memory)
        args.update(kwargs)
        args["persistent_workers"] = args["num_workers"] > 0
        return DeviceDataLoader(DataLoader(dl.dataset, **args), self.device, self.tfms, self._dataset)


def _wrap(dl: DataLoader | DeviceDataLoader | None, device: torch.device) -> DeviceDataLoader | None:
    if dl is None or isinstance(dl, DeviceDataLoader):
        if dl is not None:
            dl.device = None if device.type == "cpu" else device
        return dl
    return DeviceDataLoader(dl, None if device.type == "cpu" else device)


class DataBunch:
    """Holds `train_dl`, `valid_dl` and optionally `test_dl` (DeviceDataLoaders over torch DataLoaders).

    A batch is `(x, y)` where x or y may be a tuple of tensors (several model inputs, several
    targets); it arrives on `device` with the loader's batch transforms applied.
    """

    def __init__(self, train_dl: DataLoader | DeviceDataLoader, valid_dl: DataLoader | DeviceDataLoader | None,
                 test_dl: DataLoader | DeviceDataLoader | None = None,
                 device: torch.device | str | None = None, path: str | Path = ".",
                 classes: Sequence[Any] | None = None, c: int | None = None):
        self.device = torch.device(device) if device is not None else defaults.device
        self.train_dl, self.valid_dl, self.test_dl = (_wrap(dl, self.device) for dl in (train_dl, valid_dl, test_dl))
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

    @classmethod
    def from_label_lists(cls, lls: Any, path: str | Path | None = None, bs: int = 64, val_bs: int | None = None,
                         num_workers: int | None = None, device: torch.device | str | None = None,
                         collate_fn: Callable | None = None, dl_tfms: Sequence[BatchTransform] | None = None,
                         **kwargs: Any) -> "DataBunch":
        """The DataBunch of a labelled data block chain (`LabelLists.databunch` calls this)."""
        from deftly.data.block import build_loaders, collate_skipping

        if bs < 1:
            raise DataError(f"bs must be a positive batch size, got {bs}")
        loaders = build_loaders(lls, bs, val_bs, num_workers, device, collate_fn or collate_skipping, dl_tfms)
        bunch = cls(path=path if path is not None else lls.path, **loaders, **kwargs)
        bunch.single_ds = lls.valid  # how one item is prepared for predict (valid transforms), even if empty
        return bunch

    @property
    def loss_kind(self) -> str | None:
        """Which default loss the labels call for ('cross_entropy', 'bce', 'mse'), if known."""
        y = getattr(self.train_ds, "y", None)
        return getattr(y, "loss_kind", None)

    @property
    def label_list(self) -> Any:
        """The labelled list predictions are decoded with (the training set's)."""
        return self.train_ds

    def one_item(self, item: Any) -> tuple[Any, Any]:
        """A batch of one item (e.g. an Image) prepared like the validation set, for `predict`."""
        ll = self._predict_list()
        return self._predict_batch(ll, self.stack_items([ll.encode_x(ll.x.from_object(item))]), 1)

    def items_batch(self, items: Sequence[Any]) -> tuple[Any, Any]:
        """One batch of several items, each prepared as `one_item` prepares it (for `predict` on a list)."""
        ll = self._predict_list()
        xs = [ll.encode_x(ll.x.from_object(item)) for item in items]
        return self._predict_batch(ll, self.stack_items(xs), len(xs))

    def is_item_list(self, item: Any) -> bool:
        """Whether `predict(item)` means several items (a list) rather than one."""
        return isinstance(item, list)

    def stack_items(self, xs: Sequence[Any]) -> Any:
        """Prepared inputs of several items as one batch (they must have the same shape)."""
        shapes = {tuple(x.shape) for x in xs}
        if len(shapes) > 1:
            raise DataError(f"the items of a batch have different sizes {sorted(shapes)[:3]}; resize them alike "
                            "(size= in transform()) or predict them one at a time")
        return torch.stack(list(xs))

    def _predict_list(self) -> Any:
        single = getattr(self, "single_ds", None)
        ll = single if single is not None else self.label_list
        if not hasattr(ll, "encode_x"):
            raise DataError(f"one_item needs data built with the data block API, not {type(ll).__name__}")
        return ll

    def _predict_batch(self, ll: Any, xb: Any, n: int) -> tuple[Any, Any]:
        """`xb` moved to the device with the validation batch steps applied (normalize, dl_tfms)."""
        dl = self.valid_dl if self.valid_dl is not None else self.train_dl
        own = getattr(dl.dataset, "batch_tfms", [])
        batch = to_device((xb, torch.zeros(n, dtype=torch.long)), dl.device)
        for tfm in getattr(ll, "batch_tfms", []):
            batch = tfm(batch)
        for tfm in dl.tfms:
            if tfm not in own:
                batch = tfm(batch)
        return batch

    def tta_dl(self, ds_type: DatasetType = DatasetType.Valid) -> DeviceDataLoader:
        """A loader over a split with the training augmentation (for `Learner.TTA`); only data
        whose items have random augmentation can do this."""
        raise DataError(f"{type(self).__name__} has no test-time augmentation (no random augmentation to reuse)")

    @property
    def fix_dl(self) -> DeviceDataLoader:
        """The training loader without shuffling or dropping the last batch (v1's `fix_dl`), made
        afresh on each access so it follows later changes to `train_dl` and its transforms."""
        return self.train_dl.new(shuffle=False, drop_last=False)

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

    @property
    def dls(self) -> list[DeviceDataLoader]:
        """The loaders that exist, in the order train, valid, test."""
        return [dl for dl in (self.train_dl, self.valid_dl, self.test_dl) if dl is not None]

    def add_tfm(self, tfm: BatchTransform) -> None:
        """Add a batch transform to every loader."""
        for dl in self.dls:
            dl.add_tfm(tfm)

    def remove_tfm(self, tfm: BatchTransform) -> None:
        for dl in self.dls:
            dl.remove_tfm(tfm)

    def dl(self, ds_type: DatasetType = DatasetType.Valid) -> DeviceDataLoader:
        """The DataLoader of one split; a clear error if that split does not exist."""
        if ds_type is DatasetType.Fix:
            return self.fix_dl
        dl = {DatasetType.Train: self.train_dl, DatasetType.Valid: self.valid_dl,
              DatasetType.Test: self.test_dl}[ds_type]
        if dl is None:
            raise DataError(f"this DataBunch has no {ds_type.name.lower()} set")
        return dl

    def one_batch(self, ds_type: DatasetType = DatasetType.Train, cpu: bool = True) -> tuple[Any, Any]:
        """The first batch of a split with its batch transforms applied, on the CPU unless
        `cpu=False` (for inspection and `show_batch`)."""
        batch = next(iter(self.dl(ds_type)))
        return to_cpu(batch) if cpu else batch

    def __repr__(self) -> str:
        parts = [f"{name}: {len(dl.dataset)} items" for name, dl in
                 (("train", self.train_dl), ("valid", self.valid_dl), ("test", self.test_dl)) if dl is not None]
        return f"{type(self).__name__}({'; '.join(parts)}; bs={self.batch_size}; device={self.device})"
