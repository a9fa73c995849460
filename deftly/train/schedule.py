"""Learning-rate and momentum schedules: annealing functions and the one-cycle policy.

Schedules write `lr` (and the momentum) into the torch optimizer's param groups before each
training batch; they are a pure function of the training iteration, so a resumed fit continues
exactly where it stopped.
"""
from __future__ import annotations

import math
import numbers
from typing import Sequence

import numpy as np

from deftly.core.errors import ConfigError
from deftly.train.callback import Callback

LR = float | slice | Sequence[float]


def annealing_cos(start: float, end: float, pct: float) -> float:
    """Cosine from `start` (pct=0) to `end` (pct=1)."""
    return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))


def annealing_linear(start: float, end: float, pct: float) -> float:
    """Straight line from `start` to `end`."""
    return start + pct * (end - start)


def annealing_exp(start: float, end: float, pct: float) -> float:
    """Geometric from `start` to `end` (the LR finder's sweep)."""
    return start * (end / start) ** pct


def lr_range(lr: LR, n_groups: int) -> np.ndarray:
    """One learning rate per layer group, from a number, a `slice`, or a sequence.

    A number gives every group the same rate; `slice(hi)` gives the last group `hi` and every
    other group `hi/3` (F3:6251-6262); `slice(lo, hi)` spreads rates geometrically from the first
    group to the last.
    """
    if isinstance(lr, slice):
        if lr.stop is None:
            raise ConfigError(f"a learning-rate slice needs an end value, got {lr}")
        hi = float(lr.stop)
        if lr.start is None or n_groups == 1:
            return np.array([hi / 3] * (n_groups - 1) + [hi])
        return np.geomspace(float(lr.start), hi, n_groups)
    if isinstance(lr, numbers.Real):
        return np.full(n_groups, float(lr))
    lrs = np.asarray(lr, dtype=float)
    if lrs.shape != (n_groups,):
        raise ConfigError(f"got {lrs.size} learning rates for {n_groups} layer groups")
    return lrs


def set_momentum(group: dict, mom: float) -> None:
    """Write momentum into a torch param group: beta1 for Adam-like optimizers, else `momentum`."""
    if "betas" in group:
        group["betas"] = (mom, group["betas"][1])
    elif "momentum" in group:
        group["momentum"] = mom


def get_momentum(group: dict) -> float | None:
    """The momentum a param group uses (beta1 for Adam-like optimizers), or None."""
    if "betas" in group:
        return group["betas"][0]
    return group.get("momentum")


class OneCycleScheduler(Callback):
    """The 1cycle policy (v1 defaults): lr warms up from max_lr/div_factor to max_lr over
    `pct_start` of the iterations, then anneals (cosine) to max_lr/final_div; momentum moves the
    opposite way, moms[0] -> moms[1] -> moms[0]."""

    order = -20

    def __init__(self, learn=None, lr_max: LR = 3e-3, moms: tuple[float, float] = (0.95, 0.85),
                 div_factor: float = 25.0, pct_start: float = 0.3, final_div: float | None = None):
        super().__init__(learn)
        if not 0 <= pct_start <= 1:
            raise ConfigError(f"pct_start must be in [0, 1], got {pct_start}")
        self.lr_max, self.moms, self.div_factor, self.pct_start = lr_max, moms, div_factor, pct_start
        self.final_div = div_factor * 1e4 if final_div is None else final_div

    def before_fit(self) -> None:
        self.lrs_max = lr_range(self.lr_max, len(self.learn.layer_groups))

    def values_at(self, it: int, total: int) -> tuple[np.ndarray, float | None]:
        """The per-layer-group learning rates and the momentum at training iteration `it` of `total`."""
        warm = int(total * self.pct_start)
        if it < warm:
            pct = it / warm
            scale = annealing_cos(1 / self.div_factor, 1.0, pct)
            mom = annealing_cos(self.moms[0], self.moms[1], pct) if self.moms else None
        else:
            pct = (it - warm) / max(1, total - warm)
            scale = annealing_cos(1.0, 1 / self.final_div, pct)
            mom = annealing_cos(self.moms[1], self.moms[0], pct) if self.moms else None
        return self.lrs_max * scale, mom

    def before_batch(self) -> None:
        s = self.state
        if not s.training:
            return
        lrs, mom = self.values_at(s.train_iter, s.total_iters)
        self.learn.set_lrs(lrs, mom)


class ConstantScheduler(Callback):
    """What `fit` uses: fixed per-group learning rates (and momentum, if given)."""

    order = -20

    def __init__(self, learn=None, lr: LR = 3e-3, mom: float | None = None):
        super().__init__(learn)
        self.lr, self.mom = lr, mom

    def before_fit(self) -> None:
        self.learn.set_lrs(lr_range(self.lr, len(self.learn.layer_groups)), self.mom)
