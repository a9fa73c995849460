"""Library-wide defaults and device handling (CUDA when available, else CPU)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch


def _best_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


@dataclass
class Defaults:
    """Settings users change globally, as fastai's `defaults` (e.g. `defaults.device = 'cpu'`)."""

    device: torch.device = field(default_factory=_best_device)
    progress: bool = field(default_factory=lambda: os.environ.get("DEFTLY_PROGRESS", "1") != "0")
    num_workers: int = 0
    cmap: str = "viridis"

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "device":
            value = torch.device(value)
        super().__setattr__(name, value)


defaults = Defaults()


def to_device(obj: Any, device: torch.device | str | None) -> Any:
    """Move a tensor, or tensors nested in lists/tuples/dicts, to `device` (no-op for None)."""
    if device is None:
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    return obj


def to_cpu(obj: Any) -> Any:
    """Detach and move tensors (possibly nested) to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(o) for o in obj)
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    return obj
