"""learn.summary(): one row per leaf layer with output shape, parameters and trainability."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from deftly.core.device import to_device
from deftly.data.databunch import DatasetType
from deftly.train.layers import flatten_model

if TYPE_CHECKING:
    from deftly.train.learner import Learner


class PrettyString(str):
    """A str that shows itself without quotes in a notebook."""

    def __repr__(self) -> str:
        return str(self)


def _shape(out: Any) -> str:
    if isinstance(out, torch.Tensor):
        return "x".join(str(d) for d in out.shape)
    if isinstance(out, (list, tuple)) and out:
        return _shape(out[0])
    return "?"


def model_summary(learn: "Learner") -> PrettyString:
    """Run one validation (else training) batch through the model with forward hooks."""
    ds_type = DatasetType.Valid if learn.data.valid_dl is not None else DatasetType.Train
    xb, _ = learn.data.one_batch(ds_type)
    xb = to_device(xb, learn.data.device)
    rows: list[tuple[str, str, int, str]] = []

    def hook(module: nn.Module, inp: Any, out: Any) -> None:
        params = list(module.parameters(recurse=False))
        n = sum(p.numel() for p in params)
        trainable = "" if not params else ("True" if any(p.requires_grad for p in params) else "False")
        rows.append((type(module).__name__, _shape(out), n, trainable))

    handles = [m.register_forward_hook(hook) for m in flatten_model(learn.model)]
    was_training = learn.model.training
    try:
        learn.model.eval()
        with torch.no_grad():
            learn._forward(xb)
    finally:
        for h in handles:
            h.remove()
        learn.model.train(was_training)
    total = sum(p.numel() for p in learn.model.parameters())
    trainable = sum(p.numel() for p in learn.model.parameters() if p.requires_grad)
    width = max([len("Layer (type)")] + [len(r[0]) for r in rows]) + 2
    lines = [type(learn.model).__name__, "=" * (width + 46),
             f"{'Layer (type)':<{width}}{'Output Shape':<20}{'Param #':>12}{'Trainable':>12}",
             "=" * (width + 46)]
    lines += [f"{name:<{width}}{shape:<20}{n:>12,}{tr:>12}" for name, shape, n, tr in rows]
    lines += ["=" * (width + 46), f"Total params: {total:,}", f"Total trainable params: {trainable:,}",
              f"Total non-trainable params: {total - trainable:,}"]
    return PrettyString("\n".join(lines))
