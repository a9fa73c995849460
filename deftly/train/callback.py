"""Callbacks: the event vocabulary of the fit loop, the typed training state, and cancellation."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deftly.train.learner import Learner

#: Every event of the fit loop, in the order it first happens (fastai v2's vocabulary).
EVENTS = (
    "before_fit", "before_epoch", "before_train", "before_batch", "after_pred", "after_loss",
    "before_backward", "after_backward", "before_step", "after_step", "after_batch", "after_train",
    "before_validate", "after_validate", "after_epoch", "after_fit",
    "after_cancel_batch", "after_cancel_step", "after_cancel_train", "after_cancel_validate",
    "after_cancel_epoch", "after_cancel_fit",
)


class CancelBatchException(Exception):
    """Raise in a callback to skip the rest of this batch (after_batch still runs)."""


class CancelStepException(Exception):
    """Raise in `before_step` to skip the optimizer step (a callback may have stepped itself)."""


class CancelTrainException(Exception):
    """Raise to end the training phase of this epoch early; validation still runs."""


class CancelValidException(Exception):
    """Raise to skip the validation phase of this epoch."""


class CancelEpochException(Exception):
    """Raise to end this epoch; after_epoch still runs."""


class CancelFitException(Exception):
    """Raise to stop training; after_fit still runs."""


@dataclass
class TrainState:
    """Everything that changes while `fit` runs; callbacks read and may edit it.

    `epoch` and `iter` are 0-based; `train_iter` counts training batches since the start of the
    fit (also across a resume), so schedules are a function of it alone.
    """

    n_epochs: int = 0
    epoch: int = 0
    start_epoch: int = 0
    iter: int = 0
    n_iter: int = 0
    train_iter: int = 0
    training: bool = False
    xb: Any = None
    yb: Any = None
    pred: Any = None
    loss: Any = None
    loss_grad: Any = None
    loss_value: float = 0.0  # the training loss as a float, read once per batch by the Recorder
    epoch_start_time: float = 0.0
    fit_start_time: float = 0.0
    stop_reason: str | None = None
    show_table: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_iters(self) -> int:
        """Training batches in the whole fit."""
        return self.n_epochs * self.n_iter

    @property
    def pct_train(self) -> float:
        """How far through the training of this fit, in [0, 1)."""
        return self.train_iter / max(1, self.total_iters)


class Callback:
    """Base class: override any event method (`before_fit`, `after_batch`, ...).

    `order` sorts callbacks (lower runs first). `learn` is set when the callback is attached, and
    may also be given first, as v1's `SaveModelCallback(learn, ...)` spelling does. A callback that
    has state worth keeping across a crash returns it from `state_dict` (plain data and tensors).
    """

    order: int = 0

    def __init__(self, learn: "Learner | None" = None):
        self.learn = learn

    @property
    def state(self) -> TrainState:
        return self.learn.state

    @property
    def name(self) -> str:
        return type(self).__name__

    def state_dict(self) -> dict[str, Any]:
        """State to save in a training checkpoint."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""

    def __repr__(self) -> str:
        return f"{self.name}(order={self.order})"


def handlers(callbacks: list[Callback]) -> dict[str, list]:
    """For each event, the bound methods of the callbacks that define it, in callback order.

    Built once per fit so a batch costs a dict lookup and a short loop per event.
    """
    table: dict[str, list] = {e: [] for e in EVENTS}
    for cb in sorted(callbacks, key=lambda c: c.order):
        for event in EVENTS:
            method = getattr(cb, event, None)
            if method is not None:
                table[event].append(method)
    return table
