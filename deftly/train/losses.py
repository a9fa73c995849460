"""Losses with v1's flattening semantics, and the activation each implies for predictions."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class FlattenedLoss(nn.Module):
    """Wrap a torch loss: move `axis` last, flatten input and target, optionally make target float.

    `is_2d` keeps the class dimension for the input (cross-entropy); otherwise both are flattened
    to one dimension (MSE, BCE, L1).
    """

    def __init__(self, func: type[nn.Module], *args: Any, axis: int = -1, floatify: bool = False,
                 is_2d: bool = True, **kwargs: Any):
        super().__init__()
        self.func = func(*args, **kwargs)
        self.axis, self.floatify, self.is_2d = axis, floatify, is_2d

    def forward(self, input: Tensor, target: Tensor, **kwargs: Any) -> Tensor:
        input = input.transpose(self.axis, -1).contiguous()
        target = target.transpose(self.axis, -1).contiguous()
        if self.floatify:
            target = target.float()
        input = input.view(-1, input.shape[-1]) if self.is_2d else input.view(-1)
        return self.func(input, target.view(-1), **kwargs)

    def activation(self, x: Tensor) -> Tensor:
        """What turns raw model outputs into predictions (identity for regression losses)."""
        return x

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.func!r}, axis={self.axis})"


class CrossEntropyFlat(FlattenedLoss):
    """Cross-entropy over flattened predictions (axis=1 for per-pixel segmentation)."""

    def __init__(self, *args: Any, axis: int = -1, **kwargs: Any):
        super().__init__(nn.CrossEntropyLoss, *args, axis=axis, **kwargs)

    def activation(self, x: Tensor) -> Tensor:
        return torch.softmax(x, dim=self.axis)


class BCEWithLogitsFlat(FlattenedLoss):
    """Binary cross-entropy on logits, flattened, with float targets (multi-label)."""

    def __init__(self, *args: Any, axis: int = -1, floatify: bool = True, **kwargs: Any):
        super().__init__(nn.BCEWithLogitsLoss, *args, axis=axis, floatify=floatify, is_2d=False, **kwargs)

    def activation(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x)


class MSELossFlat(FlattenedLoss):
    """Mean squared error, flattened, with float targets (regression)."""

    def __init__(self, *args: Any, axis: int = -1, floatify: bool = True, **kwargs: Any):
        super().__init__(nn.MSELoss, *args, axis=axis, floatify=floatify, is_2d=False, **kwargs)


class L1LossFlat(FlattenedLoss):
    """Mean absolute error, flattened, with float targets."""

    def __init__(self, *args: Any, axis: int = -1, floatify: bool = True, **kwargs: Any):
        super().__init__(nn.L1Loss, *args, axis=axis, floatify=floatify, is_2d=False, **kwargs)


def loss_activation(loss_func: Any):
    """The activation to apply to model outputs for a loss: softmax for cross-entropy, sigmoid for
    BCE-with-logits, identity otherwise."""
    if hasattr(loss_func, "activation"):
        return loss_func.activation
    if isinstance(loss_func, nn.CrossEntropyLoss) or getattr(loss_func, "__name__", "") == "cross_entropy":
        return lambda x: torch.softmax(x, dim=1)
    if isinstance(loss_func, nn.BCEWithLogitsLoss) or getattr(loss_func, "__name__", "") == "binary_cross_entropy_with_logits":
        return torch.sigmoid
    return lambda x: x


def default_loss(kind: str | None) -> nn.Module | None:
    """The loss a kind of label calls for (v1's `data.loss_func`): cross-entropy for categories,
    BCE-with-logits for multi-label, MSE for regression; None when unknown."""
    makers = {"cross_entropy": CrossEntropyFlat, "bce": BCEWithLogitsFlat, "mse": MSELossFlat}
    return makers[kind]() if kind in makers else None
