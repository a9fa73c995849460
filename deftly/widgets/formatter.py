"""DatasetFormatter: which images a person should look at first (v1's `fastai.widgets`).

`from_toplosses` orders a split by the model's loss on each item (the likeliest mislabelled images
first); `from_similars` pairs the images whose CNN features are most alike (likely duplicates).
Both return `(ds, idxs)` for `ImageCleaner(ds, idxs, path)`, and both rank the training split
unless told otherwise, as v1 did (it always read `fix_dl`).

ImageCleaner's `cleaned.csv` lists the items of that one split only. When the learner's data has
another labelled split (a validation set beside the training set), both methods warn: training on
`from_csv('cleaned.csv')` would leave the other split's images out. To clean a whole dataset, do as
the course does: build the data with `.split_none()` and rank its training split (the default).

The training split is read through `DatasetType.Fix`, as v1 did: the training loader without
shuffling or dropping its last batch (its augmentation still applies), so indexes match the items.
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deftly.core.errors import ConfigError
from deftly.data.databunch import DatasetType
from deftly.train.interpret import ClassificationInterpretation

__all__ = ["DatasetFormatter"]


def _interpretation(learn: Any, ds_type: DatasetType) -> ClassificationInterpretation:
    """The model run over `ds_type` once, in item order (the training split through `DatasetType.Fix`)."""
    split = DatasetType.Fix if ds_type is DatasetType.Train else ds_type
    _warn_if_part(learn.data, split)
    return ClassificationInterpretation.from_learner(learn, split)


def _warn_if_part(data: Any, split: DatasetType) -> None:
    """Warn when the training or validation split is ranked while the other one holds labelled
    items too: ImageCleaner's cleaned.csv would hold this split alone, and from_csv would lose the rest."""
    if split not in (DatasetType.Fix, DatasetType.Valid):
        return
    n_train, n_valid = len(data.train_ds), len(data.valid_ds) if data.valid_ds is not None else 0
    mine, other = (n_train, n_valid) if split is DatasetType.Fix else (n_valid, n_train)
    if mine and other:
        name, other_name = ("training", "validation") if split is DatasetType.Fix else ("validation", "training")
        warnings.warn(
            f"DatasetFormatter ranks the {name} split only ({mine} of the {mine + other} labelled items): "
            f"ImageCleaner(ds, idxs, path) writes cleaned.csv with these {mine} items alone, so "
            f"ImageDataBunch.from_csv(path, csv_labels='cleaned.csv') would leave out the {other} {other_name} "
            f"items. To clean the whole dataset, build the data with .split_none() and rank its "
            f"training split (the default), as the course does (see the deftly.widgets docstring).",
            UserWarning, stacklevel=4)


def _module_at(model: nn.Module, layer_ls: Sequence[int] | None) -> nn.Module:
    """`model[i][j]...` for `layer_ls` = [i, j, ...]; the CNN body (`model[0]`) when None."""
    module = model
    for depth, i in enumerate([0] if layer_ls is None else layer_ls):
        try:
            module = module[i]
        except (TypeError, IndexError, KeyError) as e:
            where = "".join(f"[{k}]" for k in list(layer_ls or [0])[:depth + 1])
            raise ConfigError(f"layer_ls {list(layer_ls or [0])}: the model has no layer model{where} "
                              f"({type(module).__name__} cannot be indexed so)") from e
    return module


def _pool(actns: Tensor, pool_dim: int | None) -> Tensor:
    """(n, c, h, w) activations as (n, features): v1's AdaptiveConcatPool2d(pool_dim) (max then
    average), flattened; other shapes are flattened as they are."""
    if pool_dim and actns.ndim == 4:
        actns = torch.cat([F.adaptive_max_pool2d(actns, pool_dim), F.adaptive_avg_pool2d(actns, pool_dim)], dim=1)
    return actns.float().flatten(1)


class DatasetFormatter:
    """Orders a dataset's items for review (v1 name; all methods are class methods)."""

    @classmethod
    def from_toplosses(cls, learn: Any, n_imgs: int | None = None,
                       ds_type: DatasetType = DatasetType.Train) -> tuple[Any, Tensor]:
        """The split `ds_type` and the indexes of its `n_imgs` (default: all) items with the largest
        losses, largest first: the order `interp.top_losses()` gives."""
        if n_imgs is not None and n_imgs < 1:
            raise ConfigError(f"n_imgs must be at least 1 (or None for all), got {n_imgs}")
        interp = _interpretation(learn, ds_type)
        _, idxs = interp.top_losses(n_imgs)
        return interp.ds, idxs

    @classmethod
    def from_similars(cls, learn: Any, layer_ls: Sequence[int] | None = None, ds_type: DatasetType = DatasetType.Train,
                      pool_dim: int | None = 4) -> tuple[Any, list[int]]:
        """The split `ds_type` and pairs of indexes (flat: i0, j0, i1, j1, ...) of its most similar
        items, most similar first, for `ImageCleaner(ds, idxs, path, duplicates=True)`.

        Similarity is the cosine between the activations of `learn.model[layer_ls[0]][layer_ls[1]]...`
        (default: the CNN body's output; v1 used [0, 7, 2], the same module for a resnet34),
        pooled by v1's concat pooling to `pool_dim` x `pool_dim`. As many pairs as items.
        """
        module = _module_at(learn.model, layer_ls)
        stored: list[Tensor] = []

        def keep(_module: nn.Module, _inputs: Any, output: Tensor) -> None:
            stored.append(_pool(output.detach(), pool_dim).cpu())

        handle = module.register_forward_hook(keep)
        try:
            interp = _interpretation(learn, ds_type)
        finally:
            handle.remove()
        feats = torch.cat(stored)
        sims = _similarities(feats)
        n_pairs = min(len(feats), len(feats) * (len(feats) - 1) // 2)
        _, flat = sims.flatten().topk(n_pairs)
        rows, cols = flat // len(feats), flat % len(feats)
        pos = interp.ds_idxs  # loader rows -> dataset indexes (unreadable items are skipped)
        idxs = [int(pos[k]) for r, c in zip(rows.tolist(), cols.tolist()) for k in (r, c)]
        return interp.ds, idxs


def _similarities(feats: Tensor) -> Tensor:
    """Cosine similarity of every pair of rows, below the diagonal only (each pair once); -2 elsewhere."""
    norms = feats.norm(dim=1, keepdim=True).clamp_min(1e-8)
    unit = feats / norms
    sims = unit @ unit.t()
    below = torch.ones_like(sims, dtype=torch.bool).tril(diagonal=-1)
    return sims.masked_fill(~below, -2.0)
