"""Model helpers: BatchNorm detection, requires_grad, parameter splits for weight decay, the
pieces of v1's CNN head (AdaptiveConcatPool2d, Flatten, bn_drop_lin), embeddings and their size
rule (shared by tabular and collab), SigmoidRange, and layer-group splitting."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from deftly.core.errors import ConfigError

#: Normalisation layers whose parameters stay trainable in frozen groups (train_bn) and may be
#: exempt from weight decay (bn_wd=False).
bn_types = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
no_wd_types = bn_types + (nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)


def requires_grad(m: nn.Module, b: bool | None = None) -> bool | None:
    """Set `requires_grad` on all of `m`'s parameters, or read it (from the first one)."""
    params = list(m.parameters())
    if not params:
        return None
    if b is None:
        return params[0].requires_grad
    for p in params:
        p.requires_grad_(b)
    return b


def children(m: nn.Module) -> list[nn.Module]:
    """The direct children of a module, as a list (v1 name)."""
    return list(m.children())


def flatten_model(m: nn.Module) -> list[nn.Module]:
    """The leaf modules of `m`, in order."""
    kids = children(m)
    return [m] if not kids else [leaf for k in kids for leaf in flatten_model(k)]


def split_no_wd_params(layer_group: nn.Module, seen: set[int]) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Split a layer group's parameters into (decayed, not decayed): normalisation layers' weights
    and all biases go to the second list. `seen` makes each parameter land in one group only."""
    decay, no_decay = [], []
    for module in layer_group.modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            (no_decay if isinstance(module, no_wd_types) or name == "bias" else decay).append(p)
    return decay, no_decay


def set_trainable(groups: Iterable[nn.Module], trainable: bool, train_bn: bool) -> None:
    """Set requires_grad for every parameter of `groups`; BatchNorm stays trainable if `train_bn`."""
    for group in groups:
        for module in group.modules():
            keep = trainable or (train_bn and isinstance(module, bn_types))
            for p in module.parameters(recurse=False):
                p.requires_grad_(keep)


# --------------------------------------------------------------------------------- CNN head pieces


class AdaptiveConcatPool2d(nn.Module):
    """Max pool and average pool to `size`, concatenated on channels (2x features; v1's head pooling)."""

    def __init__(self, size: int | tuple[int, int] = 1):
        super().__init__()
        self.size = size
        self.mp = nn.AdaptiveMaxPool2d(size)
        self.ap = nn.AdaptiveAvgPool2d(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.mp(x), self.ap(x)], 1)


class Flatten(nn.Module):
    """Flatten to (batch, -1), or to one dimension with `full=True` (v1's Flatten)."""

    def __init__(self, full: bool = False):
        super().__init__()
        self.full = full

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1) if self.full else x.reshape(x.size(0), -1)

    def extra_repr(self) -> str:
        return "full=True" if self.full else ""


def bn_drop_lin(n_in: int, n_out: int, bn: bool = True, p: float = 0.0,
                actn: nn.Module | None = None) -> list[nn.Module]:
    """BatchNorm1d, Dropout(p), Linear and an optional activation: one block of v1's heads."""
    layers: list[nn.Module] = [nn.BatchNorm1d(n_in)] if bn else []
    if p != 0:
        layers.append(nn.Dropout(p))
    layers.append(nn.Linear(n_in, n_out))
    if actn is not None:
        layers.append(actn)
    return layers


def mlp_layers(sizes: Sequence[int], ps: Sequence[float], use_bn: bool = True,
               bn_final: bool = False) -> nn.Sequential:
    """v1's tabular/collab body: Linear layers between `sizes` with ReLU between them, dropout `ps`
    before each but the first, BatchNorm before each but the first when `use_bn`, and a final
    BatchNorm1d when `bn_final`."""
    actns: list[nn.Module | None] = [nn.ReLU(inplace=True) for _ in range(len(sizes) - 2)] + [None]
    blocks: list[nn.Module] = []
    for i, (n_in, n_out, p, act) in enumerate(zip(sizes[:-1], sizes[1:], [0.0, *ps], actns)):
        blocks += bn_drop_lin(n_in, n_out, bn=use_bn and i != 0, p=p, actn=act)
    if bn_final:
        blocks.append(nn.BatchNorm1d(sizes[-1]))
    return nn.Sequential(*blocks)


def embedding(ni: int, nf: int) -> nn.Embedding:
    """An `nn.Embedding(ni, nf)` initialised as v1 does: truncated normal, std 0.01 (within 2 std)."""
    emb = nn.Embedding(ni, nf)
    with torch.no_grad():
        nn.init.trunc_normal_(emb.weight, std=0.01, a=-0.02, b=0.02)
    return emb


def emb_sz_rule(n_cat: int) -> int:
    """v1's embedding width for a categorical variable with `n_cat` values (including #na#)."""
    return min(600, round(1.6 * n_cat ** 0.56))


class SigmoidRange(nn.Module):
    """Scales a sigmoid to (low, high): v1's `y_range` output for regression (ratings, log sales)."""

    def __init__(self, low: float, high: float):
        super().__init__()
        self.low, self.high = float(low), float(high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) * (self.high - self.low) + self.low

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}"


def apply_init(m: nn.Module, init: Callable[[torch.Tensor], Any]) -> None:
    """Initialise the weights of `m`'s layers with `init` and zero their biases (normalisation
    layers keep their ones and zeros), as v1 does for a new head."""
    for module in m.modules():
        if isinstance(module, no_wd_types):
            continue
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.requires_grad:
            init(weight)
            bias = getattr(module, "bias", None)
            if isinstance(bias, torch.Tensor):
                with torch.no_grad():
                    bias.zero_()


# ------------------------------------------------------------------------------------ layer groups


def param_units(m: nn.Module) -> list[nn.Module]:
    """`m` cut into ordered pieces that each own whole parameters: a module with parameters of its
    own is one piece with everything below it (so a BatchNorm with an activation inside is not split),
    a module without children is a piece; everything else is opened."""
    if next(m.parameters(recurse=False), None) is not None or not list(m.children()):
        return [m]
    return [unit for child in m.children() for unit in param_units(child)]


def split_model(model: nn.Module, splits: Sequence[nn.Module]) -> list[nn.ModuleList]:
    """Layer groups of `model`: each module of `splits` starts a new group (v1's `split_model`).

    A group is an `nn.ModuleList` of the model's own modules (nothing is copied), in forward order.
    """
    units = param_units(model)
    index = {id(u): i for i, u in enumerate(units)}
    starts = []
    for s in splits:
        first = param_units(s)[0]
        if id(first) not in index:
            raise ConfigError(f"cannot split the model at {type(s).__name__}: that module is not part of it")
        starts.append(index[id(first)])
    if any(b <= a for a, b in zip([0, *starts], starts)):
        raise ConfigError(f"the split points must be in forward order and leave no group empty (unit indices "
                          f"{starts} of {len(units)})")
    bounds = [0, *starts, len(units)]
    return [nn.ModuleList(units[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
