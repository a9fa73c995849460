"""`export_learner` (what `learn.export()` calls) and `load_learner`: a learner as one file of data.

    learn.export()                          # path/export.pkl: manifest.json + weights.safetensors
    learn = load_learner(path)              # no training data, no pickle, no user __main__
    learn.predict(img)

The file keeps v1's default name `export.pkl`, but it is a zip of JSON and safetensors, not a pickle.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deftly.core.device import defaults
from deftly.core.errors import ExportError
from deftly.export import apps
from deftly.export.archive import read_archive, split_shared, write_archive
from deftly.export.manifest import (check_manifest, labels_section, loss_from_spec, loss_spec, new_manifest)
from deftly.export.registry import arch_spec_of, build_from_spec

__all__ = ["export_learner", "load_learner"]

#: the learner classes an export may name, per application (a subclass is exported as its nearest one)
_LEARNERS: dict[str, tuple[str, ...]] = {
    "vision": ("Learner",), "tabular": ("TabularLearner", "Learner"), "collab": ("CollabLearner", "Learner"),
    "text": ("LanguageLearner", "RNNLearner")}


def _learner_name(learn: Any, application: str) -> str:
    for cls in type(learn).__mro__:
        if cls.__name__ in _LEARNERS[application] and cls.__module__.startswith("deftly."):
            return cls.__name__
    raise ExportError(f"cannot export a {type(learn).__name__} as a {application} learner; expected one of "
                      f"{list(_LEARNERS[application])}")


def _check_rebuilds(spec: dict[str, Any], model: nn.Module) -> None:
    """Rebuild the model from its recorded architecture now, so an export that could not be loaded
    fails here rather than in production."""
    rebuilt = build_from_spec(spec)
    if type(rebuilt) is not type(model):
        raise ExportError(f"the model is a {type(model).__name__} but its recorded architecture {spec['name']!r} "
                          f"builds a {type(rebuilt).__name__}: register a factory for your model with "
                          "@register_arch('name')")
    mine = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    if mine != theirs:
        diff = sorted(set(mine.items()) ^ set(theirs.items()))[:4]
        raise ExportError(f"the model no longer matches its recorded architecture {spec['name']!r} (was it changed "
                          f"after it was built?); differing weights: {diff}")


def export_learner(learn: Any, fname: str | os.PathLike = "export.pkl") -> Path:
    """Write `learn` as one file (`learn.path / fname`, atomically): a JSON manifest and safetensors
    weights; returns its path. An ExportError says what cannot be exported, before anything is written."""
    data = learn.data
    application = apps.application_of(data)
    spec = arch_spec_of(learn.model)
    _check_rebuilds(spec, learn.model)
    tensors, aliases = split_shared(learn.model.state_dict())
    label_y = data.label_list.y
    manifest = new_manifest(application, _learner_name(learn, application), spec, loss_spec(learn.loss_func),
                            labels_section(label_y), apps.describe(application, data), aliases)
    return write_archive(Path(learn.path) / fname, manifest, tensors)


def load_learner(path: str | os.PathLike, fname: str | os.PathLike = "export.pkl", cpu: bool = True,
                 test: Any = None) -> Any:
    """The learner exported to `path/fname`, ready to `predict`, on the CPU (or deftly's default
    device with `cpu=False`). Nothing in the file is executed or unpickled. `test` (v1) is not
    supported: predict items one at a time or build a DataBunch for them."""
    if test is not None:
        raise ExportError("load_learner(test=...) is not supported: call learn.predict on each item")
    path = Path(path)
    file = path / fname
    manifest, tensors = read_archive(file, check_manifest=lambda m: check_manifest(m, file))
    device = torch.device("cpu") if cpu else defaults.device
    application = manifest["application"]
    spec = manifest["arch"]
    model = build_from_spec(spec)
    state = dict(tensors)
    aliases = manifest["weights"].get("aliases") or {}
    if not isinstance(aliases, dict) or any(v not in tensors for v in aliases.values()):
        raise ExportError(f"{file}: the manifest's weight aliases name weights the file does not hold")
    for alias, name in aliases.items():
        state[alias] = tensors[name]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ExportError(f"{file}: the weights do not fit the architecture {spec['name']!r} ({e})") from e
    model.eval()
    data = apps.inference_data(application, manifest["data"], manifest["labels"], path, device)
    loss = loss_from_spec(manifest["loss"])
    return _learner(manifest, application, data, model, loss, file)


def _learner(manifest: dict[str, Any], application: str, data: Any, model: nn.Module, loss: Any, file: Path) -> Any:
    name = manifest["learner"]
    if name not in _LEARNERS[application]:
        raise ExportError(f"{file}: unknown learner {name!r} for a {application} export; known: "
                          f"{list(_LEARNERS[application])}")
    spec_name = manifest["arch"]["name"]
    if application == "vision":
        from deftly.train.layers import split_model
        from deftly.train.learner import Learner

        groups, arch = None, None
        if spec_name == "deftly.vision.cnn":
            from deftly.vision.models import get_arch

            arch = get_arch(manifest["arch"]["kwargs"]["arch"])
            groups = split_model(model, arch.layer_splits(model))
        learn = Learner(data, model, loss_func=loss, layer_groups=groups)
        if arch is not None:
            learn.arch = arch
        return learn
    if application == "tabular":
        from deftly.tabular.learner import TabularLearner
        from deftly.train.learner import Learner

        return (TabularLearner if name == "TabularLearner" else Learner)(data, model, loss_func=loss)
    if application == "collab":
        from deftly.collab.learner import CollabLearner
        from deftly.train.learner import Learner

        return (CollabLearner if name == "CollabLearner" else Learner)(data, model, loss_func=loss)
    from deftly.text.learner import LanguageLearner, RNNLearner
    from deftly.text.models import get_text_arch

    split = None
    if spec_name in ("deftly.text.language_model", "deftly.text.classifier"):
        meta = get_text_arch(manifest["arch"]["kwargs"]["arch"])
        split = meta.lm_split if spec_name == "deftly.text.language_model" else meta.clas_split
    cls = LanguageLearner if name == "LanguageLearner" else RNNLearner
    return cls(data, model, split_func=split, loss_func=loss, metrics=[])
