"""The learning-rate range test (lr_find): an exponential sweep that stops when the loss explodes."""
from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING

import numpy as np

from deftly.core.errors import ConfigError
from deftly.train.callback import Callback, CancelFitException, CancelValidException
from deftly.train.progress import ProgressCallback
from deftly.train.schedule import annealing_exp

if TYPE_CHECKING:
    from deftly.train.learner import Learner


class LRFinder(Callback):
    """Raises the learning rate geometrically from `start_lr` to `end_lr` over `num_it` batches;
    with `stop_div`, stops once the smoothed loss exceeds 4x the best seen. Skips validation."""

    order = 20  # after the Recorder, whose smoothed loss it reads

    def __init__(self, learn=None, start_lr: float = 1e-7, end_lr: float = 10, num_it: int = 100,
                 stop_div: bool = True):
        super().__init__(learn)
        if not 0 < start_lr < end_lr:
            raise ConfigError(f"lr_find needs 0 < start_lr < end_lr, got {start_lr} and {end_lr}")
        self.start_lr, self.end_lr, self.num_it, self.stop_div = start_lr, end_lr, num_it, stop_div

    def before_fit(self) -> None:
        self.best_loss = math.inf
        self.state.show_table = False  # progress shows a bar only, as v1 did

    def before_batch(self) -> None:
        s = self.state
        if s.training:
            lr = annealing_exp(self.start_lr, self.end_lr, s.train_iter / max(1, self.num_it - 1))
            self.learn.set_lrs(np.full(len(self.learn.layer_groups), lr))

    def after_batch(self) -> None:
        s = self.state
        if not s.training:
            return
        smooth = self.learn.recorder.smooth_losses[-1]
        if s.train_iter + 1 >= self.num_it or (self.stop_div and (smooth > 4 * self.best_loss or math.isnan(smooth))):
            raise CancelFitException()
        self.best_loss = min(self.best_loss, smooth)

    def before_validate(self) -> None:
        raise CancelValidException()


def lr_find(learn: "Learner", start_lr: float = 1e-7, end_lr: float = 10, num_it: int = 100,
            stop_div: bool = True, wd: float | None = None) -> None:
    """Run the range test, then put the weights and optimizer state back as they were.

    Afterwards `learn.recorder.plot()` shows loss against learning rate
    (`plot(suggestion=True)` also marks and returns a suggested rate).
    """
    if learn.opt is None:
        learn.create_opt()
    model_state = copy.deepcopy(learn.model.state_dict())
    opt_state = copy.deepcopy(learn.opt.state_dict())
    epochs = int(np.ceil(num_it / len(learn.data.train_dl)))
    try:
        learn._fit(epochs, wd, [LRFinder(start_lr=start_lr, end_lr=end_lr, num_it=num_it, stop_div=stop_div)])
    finally:
        learn.model.load_state_dict(model_state)
        learn.opt.load_state_dict(opt_state)
    if any(isinstance(cb, ProgressCallback) for cb in learn.callbacks):
        print("LR Finder is complete, type learn.recorder.plot() to see the graph.")
