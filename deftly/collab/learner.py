"""`collab_learner` and `CollabLearner`: training, predictions for (user, item) pairs, and the
lesson 5 interpretation (`bias`, `weight`, and `.pca(k)` on the weights it returns)."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from deftly.collab.data import CollabDataBunch, CollabDataset, _show_table
from deftly.collab.models import EmbeddingDotBias, EmbeddingNN
from deftly.core.errors import ConfigError
from deftly.data.databunch import DatasetType
from deftly.train.learner import Learner

__all__ = ["CollabLearner", "FactorTensor", "collab_learner", "pca"]


def pca(x: Tensor, k: int = 2) -> Tensor:
    """The rows of `x` projected on its `k` principal components (v1's `Tensor.pca`): centre the
    columns, then multiply by the top `k` right singular vectors. Each component's sign is arbitrary."""
    x = x.as_subclass(Tensor).detach().float()
    if x.ndim != 2:
        raise ConfigError(f"pca needs a 2-d tensor (rows x features), got shape {tuple(x.shape)}")
    if not 1 <= k <= min(x.shape):
        raise ConfigError(f"pca: k must be between 1 and {min(x.shape)} for shape {tuple(x.shape)}, got {k}")
    x = x - x.mean(0)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    return x @ vh[:k].T


class FactorTensor(Tensor):
    """What `CollabLearner.weight` returns: a tensor with a `pca(k)` method, so the course's
    `movie_w.pca(3)` works without adding methods to every torch.Tensor. Results of operations on
    it are plain tensors."""

    def pca(self, k: int = 2) -> Tensor:
        """The rows projected on their `k` principal components (see `deftly.collab.pca`)."""
        return pca(self, k)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        # anything computed from the weights is an ordinary tensor (only the weights carry pca)
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **(kwargs or {}))


class CollabLearner(Learner):
    """A Learner for collaborative filtering; `bias` and `weight` read the model by original ids."""

    def get_idx(self, arr: Any, is_item: bool = True) -> Tensor:
        """The embedding rows of items (or users, `is_item=False`) given by their ids or titles; a
        DataError names any id the training set does not have."""
        return self.data.codes(arr, is_item)

    def _layer(self, is_item: bool, kind: str) -> nn.Module:
        m = self.model
        if isinstance(m, EmbeddingNN) and kind == "weight":
            return m.embeds[1 if is_item else 0]
        name = ("i_" if is_item else "u_") + kind
        layer = getattr(m, name, None)
        if not isinstance(layer, nn.Module):
            raise ConfigError(f"{kind}() reads the {name} embedding of an EmbeddingDotBias model; "
                              f"{type(m).__name__} has none")
        return layer

    @torch.no_grad()
    def _lookup(self, arr: Any, is_item: bool, kind: str) -> Tensor:
        layer = self._layer(is_item, kind)
        idx = self.get_idx(arr, is_item).to(layer.weight.device)
        return layer(idx).detach().float().cpu()

    def bias(self, arr: Any, is_item: bool = True) -> Tensor:
        """The learned bias of each item (or user) in `arr`: shape (len(arr),)."""
        return self._lookup(arr, is_item, "bias").squeeze(-1)

    def weight(self, arr: Any, is_item: bool = True) -> FactorTensor:
        """The learned factors of each item (or user) in `arr`: shape (len(arr), n_factors), with `.pca(k)`."""
        return self._lookup(arr, is_item, "weight").as_subclass(FactorTensor)

    def show_results(self, ds_type: DatasetType = DatasetType.Valid, rows: int = 10, **kwargs: Any) -> None:
        """The first `rows` rows of a split with their targets and predictions, as a table."""
        (users, items), y = self.data.one_batch(ds_type)
        n = min(rows, len(y))
        batch = ((users[:n], items[:n]), y[:n])
        preds = self.pred_batch(batch=batch)
        ds = self.data.dl(ds_type).dataset
        _show_table(CollabDataset(users[:n], items[:n], y[:n], ds.classes, ds.names).frame(preds=preds))


def collab_learner(data: CollabDataBunch, n_factors: int | None = None, use_nn: bool = False,
                   emb_szs: dict[str, int] | None = None, layers: Sequence[int] | None = None,
                   ps: float | Sequence[float] | None = None, emb_drop: float = 0.0,
                   y_range: Sequence[float] | None = None, use_bn: bool = True, bn_final: bool = False,
                   metrics: Any = None, **learn_kwargs: Any) -> CollabLearner:
    """A CollabLearner on `data`: `EmbeddingDotBias(n_factors, ...)`, or with `use_nn` an
    `EmbeddingNN` (`emb_szs` overrides v1's width rule per column; `layers`, `ps`, `emb_drop`,
    `use_bn`, `bn_final` shape its MLP). Other arguments (`wd`, `opt_func`, ...) go to the Learner.
    Where v1 crashed on a missing value, fastai v2's defaults apply: `n_factors=50`, `layers=[n_factors]`."""
    if not hasattr(data, "get_emb_szs") or not isinstance(getattr(data, "classes", None), dict):
        raise ConfigError(f"collab_learner needs a CollabDataBunch, got {type(data).__name__}")
    n_factors = 50 if n_factors is None else n_factors
    if use_nn:
        model: nn.Module = EmbeddingNN(data.get_emb_szs(emb_szs), layers=[n_factors] if layers is None else layers,
                                       ps=ps, emb_drop=emb_drop, y_range=y_range, use_bn=use_bn, bn_final=bn_final)
    else:
        n_users, n_items = (len(c) for c in data.classes.values())
        model = EmbeddingDotBias(n_factors, n_users, n_items, y_range=y_range)
    return CollabLearner(data, model, metrics=metrics, **learn_kwargs)
