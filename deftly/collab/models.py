"""v1's two collaborative-filtering models: `EmbeddingDotBias` (matrix factorisation with biases)
and `EmbeddingNN` (user and item embeddings through v1's tabular MLP, without continuous inputs)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from deftly.core.errors import ConfigError
from deftly.train.layers import embedding, mlp_layers

__all__ = ["EmbeddingDotBias", "EmbeddingNN"]

Range = Sequence[float] | None


def _check_range(y_range: Range) -> tuple[float, float] | None:
    if y_range is None:
        return None
    try:
        lo, hi = (float(v) for v in y_range)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"y_range must be a pair (low, high), got {y_range!r}") from e
    if not lo < hi:
        raise ConfigError(f"y_range must have low < high, got {y_range!r}")
    return lo, hi


def _scale(x: Tensor, y_range: tuple[float, float] | None) -> Tensor:
    """A sigmoid scaled to `y_range` (v1 writes it inline, so the model's repr shows no extra layer)."""
    if y_range is None:
        return x
    lo, hi = y_range
    return torch.sigmoid(x) * (hi - lo) + lo


class EmbeddingDotBias(nn.Module):
    """Rating = user factors . item factors + user bias + item bias, squashed into `y_range` if given.

    Four embeddings initialised as v1's (truncated normal, std 0.01): `u_weight`, `i_weight`
    (`n_factors` wide) and `u_bias`, `i_bias` (one wide). `forward(users, items)` takes code tensors.
    """

    def __init__(self, n_factors: int, n_users: int, n_items: int, y_range: Range = None):
        super().__init__()
        for value, what in ((n_factors, "n_factors"), (n_users, "n_users"), (n_items, "n_items")):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{what} must be a positive integer, got {value!r}")
        self.y_range = _check_range(y_range)
        #: the arguments as plain data, so an exported learner can rebuild this model (deftly.export)
        self.arch_spec = {"name": "deftly.collab.EmbeddingDotBias", "args": [], "kwargs": dict(
            n_factors=n_factors, n_users=n_users, n_items=n_items,
            y_range=None if self.y_range is None else list(self.y_range))}
        self.u_weight, self.i_weight, self.u_bias, self.i_bias = (
            embedding(*shape) for shape in ((n_users, n_factors), (n_items, n_factors), (n_users, 1), (n_items, 1)))

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        """Predicted ratings, shape (batch,), for user and item code tensors."""
        dot = (self.u_weight(users) * self.i_weight(items)).sum(1)
        res = dot + self.u_bias(users).squeeze(-1) + self.i_bias(items).squeeze(-1)
        return _scale(res, self.y_range)


class EmbeddingNN(nn.Module):
    """v1's `TabularModel` with two categorical inputs (user, item) and no continuous ones.

    `embeds` (one embedding per `emb_szs` pair), `emb_drop`, then `layers`: for each width in
    `layers`, [BatchNorm1d (not on the first block) if `use_bn`], Dropout(p), Linear, ReLU; a last
    Linear to one output (BatchNorm1d after it if `bn_final`); a sigmoid scaled to `y_range`.
    The output has shape (batch, 1), as v1's.
    """

    def __init__(self, emb_szs: Sequence[tuple[int, int]], layers: Sequence[int] | None = None,
                 ps: float | Sequence[float] | None = None, emb_drop: float = 0.0, y_range: Range = None,
                 use_bn: bool = True, bn_final: bool = False):
        super().__init__()
        layers = list(layers) if layers is not None else []
        if ps is None:
            ps = [0.0] * len(layers)
        elif isinstance(ps, (int, float)):
            ps = [float(ps)] * len(layers)
        ps = list(ps)
        if len(ps) != len(layers):
            raise ConfigError(f"ps must give one dropout per layer: {len(ps)} for layers {layers}")
        self.embeds = nn.ModuleList([embedding(ni, nf) for ni, nf in emb_szs])
        self.emb_drop = nn.Dropout(emb_drop)
        self.n_emb = sum(e.embedding_dim for e in self.embeds)
        self.y_range = _check_range(y_range)
        #: the arguments as plain data, so an exported learner can rebuild this model (deftly.export)
        self.arch_spec = {"name": "deftly.collab.EmbeddingNN", "args": [], "kwargs": dict(
            emb_szs=[[int(ni), int(nf)] for ni, nf in emb_szs], layers=[int(n) for n in layers],
            ps=[float(p) for p in ps], emb_drop=float(emb_drop),
            y_range=None if self.y_range is None else list(self.y_range), use_bn=bool(use_bn), bn_final=bool(bn_final))}
        sizes = [self.n_emb, *layers, 1]
        self.layers = mlp_layers(sizes, ps, use_bn, bn_final)

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        """Predicted ratings, shape (batch, 1), for user and item code tensors."""
        x = torch.cat([e(codes) for e, codes in zip(self.embeds, (users, items))], 1)
        return _scale(self.layers(self.emb_drop(x)), self.y_range)
