"""Built-in callbacks: NaN guard, best-model saving, early stopping, CSV log, gradient clipping,
and crash-safe resume."""
from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path
from typing import Any

from torch import nn

from deftly.core.errors import ConfigError
from deftly.core.seed import get_rng_state, set_rng_state
from deftly.train.callback import Callback, CancelFitException


class TrainingWarning(UserWarning):
    """Something stopped or changed training; the message says what and where."""


class TerminateOnNaN(Callback):
    """Stops the fit when the training loss is NaN or infinite, before backward can spread it
    into the weights, with a message naming the epoch and the batch. It reads the loss value the
    Recorder took (order -10) in `after_loss`."""

    order = -5

    def after_loss(self) -> None:
        s = self.state
        if s.training and not math.isfinite(s.loss_value):
            s.stop_reason = (f"epoch {s.epoch + 1}/{s.n_epochs}, batch {s.iter + 1}/{s.n_iter}: the training "
                             f"loss is {s.loss_value}, so training stopped (the weights are those "
                             "before this batch)")
            warnings.warn(s.stop_reason, TrainingWarning, stacklevel=2)
            raise CancelFitException()


class _MonitorCallback(Callback):
    """Shared by callbacks that watch one column of the epoch table for improvement."""

    def __init__(self, learn=None, monitor: str = "valid_loss", mode: str = "auto"):
        super().__init__(learn)
        if mode not in ("auto", "min", "max"):
            raise ConfigError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        self.monitor = monitor
        if mode == "auto":
            mode = "min" if "loss" in monitor or "error" in monitor else "max"
        self.mode = mode
        self.best: float | None = None

    def before_fit(self) -> None:
        names = self.learn.recorder.names
        if self.monitor not in names:
            raise ConfigError(f"{self.name} monitors {self.monitor!r}, which is not a column of this fit: {names}")
        if self.state.start_epoch == 0:
            self.best = None

    def current(self) -> float | None:
        value = self.learn.recorder.last_values.get(self.monitor)
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)

    def improved(self, value: float, min_delta: float = 0.0) -> bool:
        if self.best is None:
            return True
        return value < self.best - min_delta if self.mode == "min" else value > self.best + min_delta

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]


class SaveModelCallback(_MonitorCallback):
    """Saves the model every epoch (`every='epoch'`: `{name}_{epoch}`) or whenever `monitor`
    improves (`every='improvement'`: `{name}`), and loads the best one when the fit ends."""

    def __init__(self, learn=None, monitor: str = "valid_loss", mode: str = "auto",
                 every: str = "improvement", name: str = "bestmodel"):
        super().__init__(learn, monitor, mode)
        if every not in ("improvement", "epoch"):
            raise ConfigError(f"every must be 'improvement' or 'epoch', got {every!r}")
        self.every, self.file = every, name

    def after_epoch(self) -> None:
        epoch = self.state.epoch
        if self.every == "epoch":
            self.learn.save(f"{self.file}_{epoch + 1}")
            return
        value = self.current()
        if value is not None and self.improved(value):
            self.best = value
            self.learn.save(self.file)

    def after_fit(self) -> None:
        if self.every == "improvement" and self.best is not None:
            self.learn.load(self.file, with_opt=False)


class EarlyStoppingCallback(_MonitorCallback):
    """Stops when `monitor` has not improved by `min_delta` for more than `patience` epochs."""

    def __init__(self, learn=None, monitor: str = "valid_loss", mode: str = "auto",
                 min_delta: float = 0.0, patience: int = 0):
        super().__init__(learn, monitor, mode)
        self.min_delta, self.patience, self.wait = abs(min_delta), patience, 0

    def before_fit(self) -> None:
        super().before_fit()
        if self.state.start_epoch == 0:
            self.wait = 0

    def after_epoch(self) -> None:
        value = self.current()
        if value is None:
            return
        if self.improved(value, self.min_delta):
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait > self.patience:
            self.state.stop_reason = (f"early stopping at epoch {self.state.epoch + 1}: {self.monitor} has not "
                                      f"improved for {self.wait} epochs (best {self.best:.6f})")
            raise CancelFitException()

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.wait = state["best"], state["wait"]


class CSVLogger(Callback):
    """Appends one row per epoch (the progress table's columns) to `path/filename.csv`, flushed
    each epoch so the log survives a crash. A resumed fit continues the same file."""

    order = 50

    def __init__(self, learn=None, filename: str = "history", append: bool = False):
        super().__init__(learn)
        self.filename, self.append = filename, append

    @property
    def path(self) -> Path:
        return self.learn.path / f"{self.filename}.csv"

    def before_fit(self) -> None:
        self._file = None

    def after_epoch(self) -> None:
        recorder = self.learn.recorder
        if self._file is None:
            keep = (self.append or self.state.start_epoch > 0) and self.path.exists()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a" if keep else "w", newline="")
            self._writer = csv.writer(self._file)
            if not keep:
                self._writer.writerow(recorder.names)
        row = recorder.values[-1]
        self._writer.writerow(["" if v is None else (f"{v:.6f}" if isinstance(v, float) else v) for v in row])
        self._file.flush()

    def after_fit(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def read_logged_file(self):
        """The log as a pandas DataFrame."""
        import pandas as pd

        return pd.read_csv(self.path)


class GradientClipping(Callback):
    """Clips the gradient norm of all parameters to `clip` before each optimizer step."""

    def __init__(self, learn=None, clip: float = 0.0):
        super().__init__(learn)
        self.clip = clip

    def before_step(self) -> None:
        if self.clip:
            nn.utils.clip_grad_norm_(self.learn.model.parameters(), self.clip)


class ResumeCallback(Callback):
    """Crash-safe training: at the start of each epoch, saves everything the rest of the fit
    depends on (weights, optimizer, random generators, every callback's state) to
    `path/model_dir/{name}.resume.safetensors`, atomically. If that file exists when the same
    fit starts again (after a crash or a kill), training continues from that epoch and ends with
    the same weights as an uninterrupted run (same seed, CPU, workers without their own random
    state). The file is deleted when the fit completes.
    """

    order = -50  # restore before other callbacks look at their state; save before they act

    def __init__(self, learn=None, name: str = "training"):
        super().__init__(learn)
        self.file_name = name

    @property
    def file(self) -> Path:
        return self.learn.path / self.learn.model_dir / f"{self.file_name}.resume.safetensors"

    def _fingerprint(self) -> dict[str, Any]:
        s = self.state
        return {"n_epochs": s.n_epochs, "n_iter": s.n_iter,
                "callbacks": [type(c).__name__ for c in self.learn.active_callbacks]}

    def _states(self) -> dict[str, Any]:
        return {f"{i}:{type(c).__name__}": c.state_dict() for i, c in enumerate(self.learn.active_callbacks)
                if c is not self}

    def before_fit(self) -> None:
        from deftly.train.checkpoint import load_state

        if not self.file.exists():
            return
        saved = load_state(self.file, device=self.learn.data.device)
        if saved["fingerprint"] != self._fingerprint():
            warnings.warn(f"{self.file} belongs to a different fit ({saved['fingerprint']}); starting afresh "
                          "and overwriting it", stacklevel=2)
            return
        self.learn.load_state(saved, source=self.file)
        for key, cb_state in saved["callbacks"].items():
            index = int(key.split(":", 1)[0])
            self.learn.active_callbacks[index].load_state_dict(cb_state)
        set_rng_state(saved["rng"])
        self.state.start_epoch = saved["epoch"]
        self.learn.state.stop_reason = None
        self.resumed_from = saved["epoch"]

    def before_epoch(self) -> None:
        from deftly.train.checkpoint import save_state

        if self.state.epoch == 0:
            return
        save_state(self.file, {
            "model": self.learn.model.state_dict(), "opt": self.learn.opt.state_dict(),
            "rng": get_rng_state(), "callbacks": self._states(), "epoch": self.state.epoch,
            "fingerprint": self._fingerprint(),
        })

    def after_fit(self) -> None:
        if self.file.exists():
            self.file.unlink()
