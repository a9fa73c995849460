"""`cnn_learner`: a pretrained body plus v1's new head, in three layer groups, frozen but for the head.

The model is `nn.Sequential(body, head)`, so `learn.model[0]` is always the pretrained body (as the
course says). Layer groups: the body split in two (as v1's `model_meta`), then the head; with
pretrained weights the learner starts frozen (only the head and the body's BatchNorm layers train).
The data side needs only `data.c` (outputs), `data.device` and `data.path`, plus what Learner uses.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from deftly.core.errors import ConfigError
from deftly.train.layers import AdaptiveConcatPool2d, Flatten, apply_init, bn_drop_lin, split_model
from deftly.train.learner import Learner
from deftly.train.losses import CrossEntropyFlat
from deftly.vision.models import Cut, Split, get_arch

__all__ = ["ConvLearner", "cnn_learner", "create_body", "create_cnn", "create_cnn_model", "create_head",
           "num_features_model"]

ArchLike = Any  # an Arch, a registered or timm name, or a function pretrained -> nn.Module


def create_body(arch: ArchLike, pretrained: bool = True, cut: Cut | None = None) -> nn.Module:
    """The feature extractor of `arch`: the model without its pooling and classifier (v1 name).

    `cut` overrides the arch's own: an int keeps that many children, a function maps model -> body.
    """
    arch = get_arch(arch)
    return arch.body(arch(pretrained), cut)


@torch.no_grad()
def num_features_model(body: nn.Module, size: int = 64) -> int:
    """The number of channels `body` outputs, from one dummy forward in eval mode (64x64 input)."""
    was_training = body.training
    body.eval()
    try:
        param = next(body.parameters(), None)
        x = torch.zeros(1, 3, size, size, device=param.device if param is not None else "cpu")
        out = body(x)
    finally:
        body.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 4:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"the body must output a feature map (batch, channels, h, w); it gives {shape}: "
                          "pass cut= or custom_head=")
    return out.shape[1]


def create_head(nf: int, nc: int, lin_ftrs: Sequence[int] | None = None, ps: float | Sequence[float] = 0.5,
                concat_pool: bool = True, bn_final: bool = False) -> nn.Sequential:
    """v1's head for a body with `nf` output channels and `nc` outputs.

    Pool (max and average concatenated: 2*nf features, or average only), Flatten, then for each of
    `lin_ftrs` (default [512]): BatchNorm1d, Dropout, Linear, ReLU; finally BatchNorm1d, Dropout(ps),
    Linear(.., nc). A single `ps` gives ps/2 to the hidden layers and ps to the last one.
    """
    n_in = nf * 2 if concat_pool else nf
    sizes = [n_in, *(lin_ftrs if lin_ftrs is not None else [512]), nc]
    ps = [ps] if isinstance(ps, (int, float)) else list(ps)
    if len(ps) == 1:
        ps = [ps[0] / 2] * (len(sizes) - 2) + ps
    if len(ps) != len(sizes) - 1:
        raise ConfigError(f"ps has {len(ps)} dropout values for {len(sizes) - 1} linear layers: pass one per layer "
                          "or a single number")
    actns: list[nn.Module | None] = [nn.ReLU(inplace=True) for _ in range(len(sizes) - 2)] + [None]
    layers: list[nn.Module] = [AdaptiveConcatPool2d() if concat_pool else nn.AdaptiveAvgPool2d(1), Flatten()]
    for n_i, n_o, p, actn in zip(sizes[:-1], sizes[1:], ps, actns):
        layers += bn_drop_lin(n_i, n_o, True, p, actn)
    if bn_final:
        layers.append(nn.BatchNorm1d(sizes[-1], momentum=0.01))
    return nn.Sequential(*layers)


def create_cnn_model(base_arch: ArchLike, nc: int, cut: Cut | None = None, pretrained: bool = True,
                     lin_ftrs: Sequence[int] | None = None, ps: float | Sequence[float] = 0.5,
                     custom_head: nn.Module | None = None, bn_final: bool = False,
                     concat_pool: bool = True) -> nn.Sequential:
    """`nn.Sequential(body, head)`: the arch's (pretrained) body and a new head with `nc` outputs."""
    arch = get_arch(base_arch)
    body = create_body(arch, pretrained, cut)
    if custom_head is not None:
        return nn.Sequential(body, custom_head)  # a custom head is not data: such a model has no arch_spec
    head = create_head(num_features_model(body), nc, lin_ftrs, ps, concat_pool, bn_final)
    model = nn.Sequential(body, head)
    if cut is None or isinstance(cut, int):  # how to rebuild it (deftly.export), as plain data
        model.arch_spec = {"name": "deftly.vision.cnn", "args": [], "kwargs": dict(
            arch=arch.name, nc=int(nc), cut=cut, lin_ftrs=None if lin_ftrs is None else list(lin_ftrs),
            ps=ps if isinstance(ps, (int, float)) else list(ps), bn_final=bn_final, concat_pool=concat_pool)}
    return model


def cnn_learner(data: Any, base_arch: ArchLike, cut: Cut | None = None, pretrained: bool = True,
                lin_ftrs: Sequence[int] | None = None, ps: float | Sequence[float] = 0.5,
                custom_head: nn.Module | None = None, split_on: Split | Sequence[nn.Module] | None = None,
                bn_final: bool = False, concat_pool: bool = True,
                init: Callable[[torch.Tensor], Any] | None = nn.init.kaiming_normal_,
                metrics: Any = None, **learn_kwargs: Any) -> Learner:
    """A Learner for `data` with a CNN from `base_arch` (v1's `cnn_learner`/`create_cnn`).

    The head ends in `data.c` outputs and is initialised with `init`. Layer groups: body in two
    (the arch's split, or `split_on`: a function model -> modules starting groups 2.., or such a
    list), then the head. With `pretrained` the learner is frozen: `learn.unfreeze()` trains all.
    `learn.arch` is the `Arch` (its `.name` rebuilds the model, `.stats` the input normalisation).
    Without a `loss_func` here or on `data`, the loss is `CrossEntropyFlat()`.
    """
    arch = get_arch(base_arch)
    nc = getattr(data, "c", None)
    if not isinstance(nc, int) or nc < 1:
        raise ConfigError(f"cnn_learner needs the number of outputs from data.c, got {nc!r}: build the data with "
                          "its classes (or set data.c)")
    model = create_cnn_model(arch, nc, cut, pretrained, lin_ftrs, ps, custom_head, bn_final, concat_pool)
    if init is not None:
        apply_init(model[1], init)
    if split_on is None:
        splits = arch.layer_splits(model)
    elif callable(split_on):
        splits = list(split_on(model))
    else:
        splits = list(split_on)
    layer_groups = split_model(model, splits)
    if (learn_kwargs.get("loss_func") is None and getattr(data, "loss_func", None) is None
            and getattr(data, "loss_kind", None) is None):
        learn_kwargs["loss_func"] = CrossEntropyFlat()
    model = model.to(memory_format=torch.channels_last)  # faster convolutions on CPU and with AMP on GPU
    learn = Learner(data, model, metrics=metrics, layer_groups=layer_groups, **learn_kwargs)
    learn.arch = arch
    if pretrained:
        learn.freeze()
    return learn


#: v1's later and earlier names for the same factory.
create_cnn = cnn_learner
ConvLearner = cnn_learner
