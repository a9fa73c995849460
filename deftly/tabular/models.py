"""v1's `TabularModel`: an embedding per categorical column (with embedding dropout), BatchNorm on
the continuous columns, then Linear/ReLU/BatchNorm/Dropout blocks (F3:8536-8571, printed at F3:8604)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from deftly.core.errors import ConfigError
from deftly.train.layers import SigmoidRange, embedding, mlp_layers

__all__ = ["TabularModel"]


def _ps(ps: float | Sequence[float] | None, n: int) -> list[float]:
    """One dropout probability per hidden layer: none given means 0, one number means it for all."""
    if ps is None:
        return [0.0] * n
    if isinstance(ps, (int, float)):
        return [float(ps)] * n
    ps = [float(p) for p in ps]
    if len(ps) == 1:
        return ps * n
    if len(ps) != n:
        raise ConfigError(f"ps has {len(ps)} dropout values for {n} hidden layers: give one per layer or a single number")
    return ps


class TabularModel(nn.Module):
    """Basic model for tabular data (v1): `forward(x_cat, x_cont)`.

    The first Linear takes the concatenated embeddings and normalised continuous inputs; each
    later block is BatchNorm1d (when `use_bn`), Dropout (`ps[i]`, when not 0), Linear, ReLU except
    after the last; `bn_final` adds a BatchNorm1d on the output and `y_range` a scaled sigmoid.
    """

    def __init__(self, emb_szs: Sequence[tuple[int, int]], n_cont: int, out_sz: int, layers: Sequence[int],
                 ps: float | Sequence[float] | None = None, emb_drop: float = 0.0,
                 y_range: Sequence[float] | Tensor | None = None, use_bn: bool = True, bn_final: bool = False):
        super().__init__()
        layers = [int(n) for n in layers]
        ps = _ps(ps, len(layers))
        yr = None if y_range is None else [float(v) for v in (y_range.tolist() if isinstance(y_range, Tensor) else y_range)]
        #: the arguments as plain data, so an exported learner can rebuild this model (deftly.export)
        self.arch_spec = {"name": "deftly.tabular.TabularModel", "args": [], "kwargs": dict(
            emb_szs=[[int(ni), int(nf)] for ni, nf in emb_szs], n_cont=int(n_cont), out_sz=int(out_sz), layers=layers,
            ps=ps, emb_drop=float(emb_drop), y_range=yr, use_bn=bool(use_bn), bn_final=bool(bn_final))}
        self.embeds = nn.ModuleList([embedding(ni, nf) for ni, nf in emb_szs])
        self.emb_drop = nn.Dropout(emb_drop)
        self.bn_cont = nn.BatchNorm1d(n_cont)
        self.n_emb = sum(e.embedding_dim for e in self.embeds)
        self.n_cont = n_cont
        sizes = [self.n_emb + n_cont, *layers, out_sz]
        self.layers = mlp_layers(sizes, ps, use_bn, bn_final)
        if y_range is not None:
            low, high = (float(v) for v in (y_range.tolist() if isinstance(y_range, Tensor) else y_range))
            self.y_range: SigmoidRange | None = SigmoidRange(low, high)
        else:
            self.y_range = None

    def forward(self, x_cat: Tensor, x_cont: Tensor) -> Tensor:
        parts = []
        if self.n_emb != 0:
            x = torch.cat([e(x_cat[:, i]) for i, e in enumerate(self.embeds)], 1)
            parts.append(self.emb_drop(x))
        if self.n_cont != 0:
            parts.append(self.bn_cont(x_cont))
        x = self.layers(parts[0] if len(parts) == 1 else torch.cat(parts, 1))
        return self.y_range(x) if self.y_range is not None else x
