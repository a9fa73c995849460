"""Interleaved timing of a few steps, shared by benchmark scripts on both sides of a comparison
(plain Python: the peer environment imports it too)."""
from __future__ import annotations

import time
from typing import Callable


def time_steps(steps: dict[str, Callable[[], None]], warmup: int, runs: int) -> dict[str, list[float]]:
    """Seconds per call of each step: `warmup` untimed rounds, then `runs` rounds in which the steps
    take turns, so slow drifts of the machine hit every step alike."""
    for _ in range(warmup):
        for fn in steps.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(runs):
        for name, fn in steps.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times
