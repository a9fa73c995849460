"""Recorder: per-batch losses, learning rates and momentums; per-epoch losses and metrics; plots."""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from deftly.core.errors import TrainingError
from deftly.train.callback import Callback
from deftly.train.metrics import Metric, as_metric, metric_errors
from deftly.train.schedule import get_momentum


def format_time(seconds: float) -> str:
    """mm:ss (or h:mm:ss), as the course's progress table prints durations."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _first_item_count(yb: Any) -> int:
    t = yb[0] if isinstance(yb, (list, tuple)) else yb
    return int(t.shape[0]) if getattr(t, "ndim", 0) else 1


class Recorder(Callback):
    """Always attached (as `learn.recorder`). Keeps what happened in the last fit.

    `losses`: raw training loss per batch; `smooth_losses`: its debiased exponential moving
    average (what v1 shows as train_loss); `lrs` and `moms`: of the last layer group per batch;
    `values`: one row per epoch, matching `names`.
    """

    order = -10

    def __init__(self, learn=None, beta: float = 0.98):
        super().__init__(learn)
        self.beta = beta
        self.metrics: list[Metric] = []
        self._clear()

    def _clear(self) -> None:
        self.losses: list[float] = []
        self.smooth_losses: list[float] = []
        self.lrs: list[float] = []
        self.moms: list[float] = []
        self.values: list[list[Any]] = []
        self.nb_batches: list[int] = []
        self._avg, self._n = 0.0, 0

    @property
    def metric_names(self) -> list[str]:
        return [m.name for m in self.metrics]

    @property
    def names(self) -> list[str]:
        """Column names of the progress table (F3:538-545)."""
        return ["epoch", "train_loss", "valid_loss", *self.metric_names, "time"]

    def before_fit(self) -> None:
        self.metrics = [as_metric(m) for m in self.learn.metrics]
        self._group = self.learn.opt.param_groups[-1]
        if self.state.start_epoch == 0:
            self._clear()

    def before_epoch(self) -> None:
        self._epoch_start = time.perf_counter()
        self._epoch_batches = 0
        self._valid_loss, self._valid_count = 0.0, 0

    def after_loss(self) -> None:
        s = self.state
        if s.training:  # read the loss once; TerminateOnNaN checks this value too
            s.loss_value = s.loss.item()

    def after_batch(self) -> None:
        s = self.state
        if s.training:
            value = s.loss_value
            self.losses.append(value)
            self._n += 1
            self._avg = self.beta * self._avg + (1 - self.beta) * value
            self.smooth_losses.append(self._avg / (1 - self.beta ** self._n))
            group = self._group
            self.lrs.append(group["lr"])
            mom = get_momentum(group)
            if mom is not None:
                self.moms.append(mom)
            self._epoch_batches += 1
        else:
            n = _first_item_count(s.yb)
            self._valid_loss += s.loss.item() * n
            self._valid_count += n
            targ = s.yb[0] if isinstance(s.yb, (list, tuple)) and len(s.yb) == 1 else s.yb
            for m in self.metrics:
                with metric_errors(m, s.pred, targ, f"epoch {s.epoch + 1}, validation batch {s.iter}"):
                    m.accumulate(s.pred, targ)

    def before_validate(self) -> None:
        self._valid_loss, self._valid_count = 0.0, 0
        for m in self.metrics:
            m.reset()

    def after_epoch(self) -> None:
        s = self.state
        validated = self._valid_count > 0
        valid_loss = self._valid_loss / self._valid_count if validated else None
        metrics = [None] * len(self.metrics)
        if validated:
            for i, m in enumerate(self.metrics):
                with metric_errors(m, None, None, f"epoch {s.epoch + 1}"):
                    metrics[i] = m.value
        train_loss = self.smooth_losses[-1] if self.smooth_losses else None
        self.nb_batches.append(self._epoch_batches)
        self.values.append([s.epoch + 1, train_loss, valid_loss, *metrics,
                            time.perf_counter() - self._epoch_start])

    @property
    def last_values(self) -> dict[str, Any]:
        """The last epoch's row as a dict (what SaveModel/EarlyStopping monitor)."""
        return dict(zip(self.names, self.values[-1])) if self.values else {}

    def value_history(self, name: str) -> list[Any]:
        """One column of the epoch table."""
        i = self.names.index(name)
        return [row[i] for row in self.values]

    # --- checkpointed state -------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"losses": self.losses, "smooth_losses": self.smooth_losses, "lrs": self.lrs,
                "moms": self.moms, "values": self.values, "nb_batches": self.nb_batches,
                "avg": self._avg, "n": self._n}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("losses", "smooth_losses", "lrs", "moms", "values", "nb_batches"):
            setattr(self, key, list(state[key]))
        self._avg, self._n = state["avg"], state["n"]

    # --- plots ----------------------------------------------------------------------------
    def plot(self, skip_start: int = 10, skip_end: int = 5, suggestion: bool = False,
             return_fig: bool = False, ax=None, **kwargs: Any):
        """Loss against learning rate (log scale) after `lr_find`.

        With `suggestion=True`, marks the point of steepest descent of the smoothed loss and
        returns that learning rate (also kept in `min_grad_lr`); `return_fig=True` returns the
        figure instead.
        """
        import matplotlib.pyplot as plt

        lrs = self.lrs[skip_start:len(self.lrs) - skip_end] if skip_end else self.lrs[skip_start:]
        losses = self.smooth_losses[skip_start:len(self.smooth_losses) - skip_end] if skip_end \
            else self.smooth_losses[skip_start:]
        if len(losses) < 2:
            raise TrainingError(f"not enough points to plot ({len(self.lrs)} recorded, skip_start={skip_start}, "
                                f"skip_end={skip_end}): run learn.lr_find() first")
        fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(1, 1, **kwargs)
        ax.plot(lrs, losses)
        ax.set_xscale("log")
        ax.set_xlabel("Learning Rate")
        ax.set_ylabel("Loss")
        result = fig if return_fig else None
        if suggestion:
            i = int(np.argmin(np.gradient(np.array(losses))))
            self.min_grad_lr = lrs[i]
            ax.plot(lrs[i], losses[i], markersize=10, marker="o", color="red")
            if not return_fig:
                result = self.min_grad_lr
        return result

    def plot_losses(self, skip_start: int = 0, return_fig: bool = False, ax=None, **kwargs: Any):
        """Smoothed training loss per batch and validation loss at each epoch's end."""
        import matplotlib.pyplot as plt

        fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(1, 1, **kwargs)
        its = np.arange(len(self.smooth_losses))
        ax.plot(its[skip_start:], self.smooth_losses[skip_start:], label="Train")
        valid = self.value_history("valid_loss") if self.values else []
        ends = np.cumsum(self.nb_batches) - 1
        pts = [(e, v) for e, v in zip(ends, valid) if v is not None and e >= skip_start]
        if pts:
            ax.plot(*zip(*pts), marker="o", label="Validation")
        ax.set_xlabel("Batches processed")
        ax.set_ylabel("Loss")
        ax.legend()
        return fig if return_fig else None

    def plot_lr(self, show_moms: bool = False, return_fig: bool = False, **kwargs: Any):
        """Learning rate (and momentum) per training batch."""
        import matplotlib.pyplot as plt

        its = range(len(self.lrs))
        if show_moms and self.moms:
            fig, axs = plt.subplots(1, 2, figsize=kwargs.pop("figsize", (12, 4)), **kwargs)
            axs[0].plot(its, self.lrs)
            axs[0].set_xlabel("Iterations"); axs[0].set_ylabel("Learning Rate")
            axs[1].plot(range(len(self.moms)), self.moms)
            axs[1].set_xlabel("Iterations"); axs[1].set_ylabel("Momentum")
        else:
            fig, ax = plt.subplots(1, 1, **kwargs)
            ax.plot(its, self.lrs)
            ax.set_xlabel("Iterations"); ax.set_ylabel("Learning Rate")
        return fig if return_fig else None

    def plot_metrics(self, return_fig: bool = False, **kwargs: Any):
        """Each metric against the epoch."""
        import matplotlib.pyplot as plt

        if not self.metrics:
            raise TrainingError("there are no metrics to plot: pass metrics= to the Learner")
        n = len(self.metrics)
        fig, axs = plt.subplots(n, 1, figsize=kwargs.pop("figsize", (6, 4 * n)), squeeze=False, **kwargs)
        epochs = self.value_history("epoch")
        for ax, name in zip(axs[:, 0], self.metric_names):
            ax.plot(epochs, [math.nan if v is None else v for v in self.value_history(name)])
            ax.set_xlabel("Epoch"); ax.set_ylabel(name)
        return fig if return_fig else None

