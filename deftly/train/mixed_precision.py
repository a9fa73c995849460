"""Loss scaling for fp16 training on CUDA (autocast itself is done by the Learner's loop)."""
from __future__ import annotations

from typing import Any

import torch

from deftly.train.callback import Callback, CancelStepException


class GradScalerCallback(Callback):
    """Scales the loss before backward, unscales gradients after it (so clipping sees true
    values), and steps through the scaler, which skips steps whose gradients overflowed."""

    order = 90  # before_step must come after gradient clipping (order 0)

    def before_fit(self) -> None:
        if not hasattr(self, "scaler"):
            self.scaler = torch.amp.GradScaler(self.learn.data.device.type)

    def before_backward(self) -> None:
        self.state.loss_grad = self.scaler.scale(self.state.loss)

    def after_backward(self) -> None:
        self.scaler.unscale_(self.learn.opt)

    def before_step(self) -> None:
        self.learn.decay_weights()
        self.scaler.step(self.learn.opt)
        self.scaler.update()
        raise CancelStepException()

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if hasattr(self, "scaler") else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.before_fit()
            self.scaler.load_state_dict(state)
