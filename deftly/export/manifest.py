"""The manifest of an exported learner: plain JSON data, checked before anything is built from it.

    {"format": "deftly.learner", "format_version": 1, "deftly_version": "0.1.0", "torch_version": "2.x",
     "application": "vision" | "tabular" | "collab" | "text",
     "learner": "Learner" | "TabularLearner" | "CollabLearner" | "RNNLearner" | "LanguageLearner",
     "arch": {"name": "deftly.vision.cnn", "args": [], "kwargs": {"arch": "resnet18", "nc": 2, ...}},
     "loss": {"name": "CrossEntropyFlat", "axis": -1},
     "labels": {"kind": "single" | "multi" | "float" | "lm" | "none", "classes": [...], "log": false},
     "data": {...what the application needs to prepare one item...},
     "weights": {"file": "weights.safetensors", "sha256": "...", "aliases": {"tied.name": "stored.name"}}}
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
from torch import nn

import deftly
from deftly.core.errors import ExportError
from deftly.data.items import CategoryList, EmptyLabelList, FloatList, ItemList, MultiCategoryList
from deftly.train import losses

__all__ = ["FORMAT", "FORMAT_VERSION", "APPLICATIONS", "check_manifest", "jsonable", "label_list",
           "labels_section", "loss_from_spec", "loss_spec", "new_manifest"]

FORMAT = "deftly.learner"
#: bump when a manifest written by this version cannot be read by an older deftly
FORMAT_VERSION = 1
APPLICATIONS = ("vision", "tabular", "collab", "text")
_REQUIRED = ("application", "learner", "arch", "loss", "labels", "data", "weights")


def jsonable(value: Any, where: str) -> Any:
    """`value` as plain JSON data (numpy scalars and tuples converted); an ExportError naming
    `where` for anything else (a function, a tensor, an object)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            raise ExportError(f"cannot export {where}: {v} is not a finite number")
        return v
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (list, tuple)):
        return [jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ExportError(f"cannot export {where}: the key {k!r} is not a string")
            out[k] = jsonable(v, f"{where}.{k}")
        return out
    raise ExportError(f"cannot export {where}: a {type(value).__name__} ({value!r:.80}) is not plain data "
                      "(numbers, strings, lists, dicts); exports hold data, never code")


def new_manifest(application: str, learner: str, arch: dict[str, Any], loss: dict[str, Any],
                 labels: dict[str, Any], data: dict[str, Any], aliases: dict[str, str]) -> dict[str, Any]:
    """A complete manifest (the weights' SHA-256 is filled in while writing)."""
    import torch

    return {"format": FORMAT, "format_version": FORMAT_VERSION, "deftly_version": deftly.__version__,
            "torch_version": torch.__version__.split("+")[0], "application": application, "learner": learner,
            "arch": jsonable(arch, "the model's architecture arguments"), "loss": loss,
            "labels": jsonable(labels, "the labels"), "data": jsonable(data, "the data settings"),
            "weights": {"file": "weights.safetensors", "sha256": None, "aliases": dict(aliases)}}


def check_manifest(manifest: dict[str, Any], source: Any = "the export") -> None:
    """An ExportError unless `manifest` is one this deftly can read (format, version, sections)."""
    fmt = manifest.get("format")
    if fmt != FORMAT:
        raise ExportError(f"{source} is not a deftly exported learner: its manifest's format is {fmt!r}, "
                          f"expected {FORMAT!r}")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ExportError(f"{source}: the manifest's format_version {version!r} is not a positive integer")
    if version > FORMAT_VERSION:
        raise ExportError(f"{source} was written by a newer deftly ({manifest.get('deftly_version', '?')}, export "
                          f"format version {version}); this deftly ({deftly.__version__}) reads format version "
                          f"{FORMAT_VERSION} and below: upgrade deftly to load it")
    missing = [k for k in _REQUIRED if k not in manifest]
    if missing:
        raise ExportError(f"{source}: the manifest lacks {missing}")
    if manifest["application"] not in APPLICATIONS:
        raise ExportError(f"{source}: unknown application {manifest['application']!r}; known: {list(APPLICATIONS)}")
    arch = manifest["arch"]
    if not isinstance(arch, dict) or not isinstance(arch.get("name"), str):
        raise ExportError(f"{source}: the manifest's arch must be an object with a name")
    for key in ("labels", "data", "weights", "loss"):
        if not isinstance(manifest[key], dict):
            raise ExportError(f"{source}: the manifest's {key} must be an object")
    from deftly.export.registry import get_arch_factory

    get_arch_factory(arch["name"])  # an unknown architecture fails here, before the weights are read


# ------------------------------------------------------------------------------------------ labels


def labels_section(y: ItemList) -> dict[str, Any]:
    """What the label list of the training data says about predictions: its kind and classes."""
    if isinstance(y, MultiCategoryList):
        return {"kind": "multi", "classes": jsonable(list(y.classes), "the classes")}
    if isinstance(y, CategoryList):
        return {"kind": "single", "classes": jsonable(list(y.classes), "the classes")}
    if isinstance(y, FloatList):
        return {"kind": "float", "log": bool(y.log)}
    if getattr(y, "kind", None) == "lm":
        return {"kind": "lm"}
    if isinstance(y, EmptyLabelList):
        return {"kind": "none"}
    raise ExportError(f"cannot export labels of type {type(y).__name__}: deftly exports single-label, multi-label "
                      "and float (regression) labels")


def label_list(section: dict[str, Any], path: Any) -> tuple[type, dict[str, Any]]:
    """The label list class and its arguments (for an empty list) that `labels_section` described."""
    kind = section.get("kind")
    classes = section.get("classes")
    if kind in ("single", "multi"):
        if not isinstance(classes, list):
            raise ExportError(f"the manifest's {kind}-label classes must be a list, got {type(classes).__name__}")
        return (CategoryList if kind == "single" else MultiCategoryList), {"classes": classes}
    if kind == "float":
        return FloatList, {"log": bool(section.get("log", False))}
    if kind == "none":
        return EmptyLabelList, {}
    raise ExportError(f"unknown label kind {kind!r} in the manifest; known: single, multi, float, none")


# -------------------------------------------------------------------------------------------- loss

_FLAT: dict[str, Callable[..., nn.Module]] = {
    "CrossEntropyFlat": losses.CrossEntropyFlat, "BCEWithLogitsFlat": losses.BCEWithLogitsFlat,
    "MSELossFlat": losses.MSELossFlat, "L1LossFlat": losses.L1LossFlat}
_TORCH: dict[str, Callable[[], nn.Module]] = {
    "CrossEntropyLoss": nn.CrossEntropyLoss, "BCEWithLogitsLoss": nn.BCEWithLogitsLoss, "MSELoss": nn.MSELoss,
    "L1Loss": nn.L1Loss}
_FUNCTIONS = ("cross_entropy", "binary_cross_entropy_with_logits", "mse_loss", "l1_loss")


def loss_spec(loss_func: Any) -> dict[str, Any]:
    """The learner's loss by name (it decides the activation `predict` applies: softmax, sigmoid, none)."""
    name = type(loss_func).__name__
    if name in _FLAT and type(loss_func) is _FLAT[name]:
        return {"name": name, "axis": int(loss_func.axis)}
    if name in _TORCH and type(loss_func) is _TORCH[name]:
        return {"name": name}
    fn = getattr(loss_func, "__name__", None)
    if fn in _FUNCTIONS and getattr(loss_func, "__module__", "").startswith("torch.nn"):
        return {"name": f"F.{fn}"}
    raise ExportError(f"cannot export the loss {loss_func!r}: an export names its loss (which decides the "
                      f"activation of predictions); supported: {', '.join([*_FLAT, *_TORCH])} and torch's "
                      f"{', '.join(_FUNCTIONS)}. Set learn.loss_func to one of them before exporting")


def loss_from_spec(spec: dict[str, Any]) -> Any:
    """The loss `loss_spec` described."""
    import torch.nn.functional as F

    name = spec.get("name")
    if name in _FLAT:
        return _FLAT[name](axis=int(spec.get("axis", -1)))
    if name in _TORCH:
        return _TORCH[name]()
    if isinstance(name, str) and name.startswith("F.") and name[2:] in _FUNCTIONS:
        return getattr(F, name[2:])
    raise ExportError(f"unknown loss {name!r} in the manifest; known: {', '.join([*_FLAT, *_TORCH])}, "
                      f"{', '.join('F.' + f for f in _FUNCTIONS)}")
