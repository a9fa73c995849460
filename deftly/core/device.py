"""Library-wide defaults and device handling (CUDA when available, else CPU)."""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from deftly.core.errors import ConfigError


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


def usable_cores() -> int:
    """CPU cores this process may run on: its affinity mask, capped by a cgroup v2 CPU quota (containers)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def set_inference_threads(n: int | None = None, processes: int = 1, interop: int | None = 1) -> tuple[int, int]:
    """Set torch's thread counts for serving; returns (intra-op threads, inter-op threads) now in effect.

    A server that runs `processes` worker processes on one machine gives each `usable_cores() //
    processes` intra-op threads (at least 1) unless `n` says; inter-op threads default to 1 (one
    request runs one model at a time). Thread counts are process-wide, so nothing in deftly calls
    this for you (`load_learner` leaves them alone): call it once when a serving process starts.
    torch fixes the inter-op count once parallel work has run; then it is left as is, with a warning.
    """
    if processes < 1:
        raise ConfigError(f"processes must be >= 1, got {processes}")
    threads = max(1, usable_cores() // processes) if n is None else int(n)
    if threads < 1:
        raise ConfigError(f"the number of threads must be >= 1, got {n}")
    torch.set_num_threads(threads)
    if interop is not None and torch.get_num_interop_threads() != interop:
        try:
            torch.set_num_interop_threads(int(interop))
        except RuntimeError:
            warnings.warn(f"set_inference_threads: torch already runs {torch.get_num_interop_threads()} inter-op "
                          f"threads and cannot change them now; call it before any model runs to get {interop}",
                          stacklevel=2)
    return torch.get_num_threads(), torch.get_num_interop_threads()


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16, AMX, or AVX-512 that oneDNN uses
    for bf16): there bf16 autocast makes CNNs 1.3-2.5x faster; without it, far slower (13x for a
    resnet18 step on an AVX2-only CPU). False when torch cannot tell."""
    check = getattr(getattr(torch.ops, "mkldnn", None), "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False
