"""Loaders over data that is already tensors (tabular, collab): a batch is a slice, not a collation.

The processed table becomes tensors once; each batch indexes every tensor with one index tensor.
No per-row Python objects, no collate: this is what makes tabular training run at the speed of a
plain PyTorch loop over the same tensors.
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from deftly.core.errors import DataError


def _index(batch: Any, idx: Tensor) -> Any:
    if isinstance(batch, Tensor):
        return batch[idx]
    return type(batch)(_index(b, idx) for b in batch)


def _leaves(batch: Any) -> list[Tensor]:
    if isinstance(batch, Tensor):
        return [batch]
    return [t for b in batch for t in _leaves(b)]


class TensorBatches(Dataset):
    """Aligned tensors `x` (a tensor or nested tuple of tensors) and `y`, indexed a batch at a time.

    `ds[idx]` with an index tensor returns `(x[idx], y[idx])` with the nesting of `x` kept, e.g.
    `((cats[idx], conts[idx]), y[idx])`. Use with `tensor_loader`, which hands it whole batches.
    """

    def __init__(self, x: Any, y: Tensor):
        lengths = {len(t) for t in _leaves(x)} | {len(y)}
        if len(lengths) != 1:
            raise DataError(f"tensors of one dataset must have the same number of rows, got lengths {sorted(lengths)}")
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, idx: Tensor | int | Sequence[int]) -> tuple[Any, Tensor]:
        if isinstance(idx, int):
            return _index(self.x, torch.tensor(idx)), self.y[idx]
        idx = torch.as_tensor(idx)
        return _index(self.x, idx), self.y[idx]


class BatchIndexSampler(Sampler):
    """Yields index tensors of `bs` rows: a fresh permutation per epoch when `shuffle`, else in order."""

    def __init__(self, n: int, bs: int, shuffle: bool = False, drop_last: bool = False,
                 generator: torch.Generator | None = None):
        if bs < 1:
            raise DataError(f"bs must be a positive batch size, got {bs}")
        self.n, self.bs, self.shuffle, self.drop_last, self.generator = n, bs, shuffle, drop_last, generator

    def __len__(self) -> int:
        return self.n // self.bs if self.drop_last else -(-self.n // self.bs)

    def __iter__(self) -> Iterator[Tensor]:
        order = torch.randperm(self.n, generator=self.generator) if self.shuffle else torch.arange(self.n)
        for i in range(len(self)):
            yield order[i * self.bs:(i + 1) * self.bs]


def _as_is(batch: Any) -> Any:
    return batch


def tensor_loader(ds: Dataset, bs: int, shuffle: bool = False, drop_last: bool = False,
                  generator: torch.Generator | None = None) -> DataLoader:
    """A torch DataLoader that asks `ds` for whole batches by index tensor (no workers, no collate).

    Workers would only add inter-process copies: slicing a tensor is cheaper than sending it.
    """
    sampler = BatchIndexSampler(len(ds), bs, shuffle, drop_last, generator)
    return DataLoader(ds, batch_size=None, sampler=sampler, collate_fn=_as_is, num_workers=0)
