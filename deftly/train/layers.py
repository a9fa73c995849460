"""Model helpers: BatchNorm detection, requires_grad, parameter splits for weight decay."""
from __future__ import annotations

from typing import Iterable

from torch import nn

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
