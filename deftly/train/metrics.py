"""Metrics, computed exactly over the whole validation set.

A metric given to a Learner becomes a `Metric` (reset / accumulate / value). Plain functions
that are means over items (accuracy, error_rate, mse, ...) are averaged weighted by batch size,
which is exact. Metrics that are not means over items (rmse, r2_score, fbeta, exp_rmspe, dice,
precision/recall) declare how to accumulate with `accumulates`, so they are computed on the
whole set, never as a mean of per-batch values. `functools.partial` of either works and keeps
the wrapped function's name (F3:3793-3818).
"""
from __future__ import annotations

import contextlib
from functools import partial
from typing import Any, Callable, Iterator

import torch
from torch import Tensor

from deftly.core.errors import DeftlyError, TrainingError


class Metric:
    """Accumulates over batches; `value` is the metric on everything seen since `reset`."""

    name: str = "metric"

    def reset(self) -> None:
        raise NotImplementedError

    def accumulate(self, pred: Tensor, targ: Tensor) -> None:
        raise NotImplementedError

    @property
    def value(self) -> float:
        raise NotImplementedError


def _shape(x: Any) -> Any:
    if isinstance(x, (list, tuple)):
        return [_shape(t) for t in x]
    return tuple(x.shape) if hasattr(x, "shape") else type(x).__name__


@contextlib.contextmanager
def metric_errors(metric: "Metric", pred: Any, targ: Any, where: str) -> Iterator[None]:
    """Turn a metric's failure into a TrainingError naming the metric, the shapes and where."""
    try:
        yield
    except DeftlyError:
        raise
    except (RuntimeError, IndexError, ValueError, TypeError) as e:
        shapes = (f"predictions of shape {_shape(pred)} and targets of shape {_shape(targ)}"
                  if pred is not None else "the whole validation set")
        raise TrainingError(f"metric {metric.name!r} failed on {shapes} ({where}): {e}") from e


def _n_items(targ: Any) -> int:
    t = targ[0] if isinstance(targ, (list, tuple)) else targ
    return t.shape[0] if isinstance(t, Tensor) and t.ndim else 1


class AvgMetric(Metric):
    """A function that is a mean over items, averaged over batches weighted by their size."""

    def __init__(self, func: Callable, name: str | None = None):
        self.func, self.name = func, name or metric_name(func)
        self.reset()

    def reset(self) -> None:
        self.total, self.count = 0.0, 0

    def accumulate(self, pred: Tensor, targ: Tensor) -> None:
        n = _n_items(targ)
        self.total += float(self.func(pred, targ)) * n
        self.count += n

    @property
    def value(self) -> float:
        return self.total / self.count if self.count else float("nan")


class WholeSetMetric(Metric):
    """Keeps every prediction and target (on the CPU), then applies `func` once to all of them."""

    def __init__(self, func: Callable, name: str | None = None):
        self.func, self.name = func, name or metric_name(func)
        self.reset()

    def reset(self) -> None:
        self.preds: list[Tensor] = []
        self.targs: list[Tensor] = []

    def accumulate(self, pred: Tensor, targ: Tensor) -> None:
        self.preds.append(pred.detach().float().cpu())
        self.targs.append(targ.detach().cpu())

    @property
    def value(self) -> float:
        if not self.preds:
            return float("nan")
        preds, targs = torch.cat(self.preds), torch.cat(self.targs)
        with metric_errors(self, preds, targs, "whole validation set"):
            return float(self.func(preds, targs))


def accumulates(factory: Callable[..., Metric]):
    """Decorator: when this function is given to a Learner, `factory(**kwargs)` computes it."""
    def mark(func: Callable) -> Callable:
        func.metric_factory = factory
        return func
    return mark


def metric_name(m: Any) -> str:
    """The column name: the function's name, also through `partial` (F3:3695-3696)."""
    while isinstance(m, partial):
        m = m.func
    return getattr(m, "name", None) or getattr(m, "__name__", None) or type(m).__name__


def as_metric(m: Any) -> Metric:
    """Turn what a user passed in `metrics=` into a Metric."""
    if isinstance(m, Metric):
        return m
    if isinstance(m, type) and issubclass(m, Metric):
        return m()
    func, kwargs = m, {}
    if isinstance(m, partial) and not m.args:
        func, kwargs = m.func, dict(m.keywords)
    factory = getattr(func, "metric_factory", None)
    if factory is not None:
        metric = factory(**kwargs)
        metric.name = metric_name(m)
        return metric
    if not callable(m):
        raise TrainingError(f"metric {m!r} is neither a function nor a Metric")
    return AvgMetric(m)


def _flat_pair(input: Tensor, targs: Tensor) -> tuple[Tensor, Tensor]:
    n = targs.shape[0]
    return input.argmax(dim=-1).view(n, -1), targs.view(n, -1)


class Accuracy(Metric):
    """Counts correct argmax predictions over the whole set (one sync per batch)."""

    name = "accuracy"

    def __init__(self, error: bool = False):
        self.error = error
        self.name = "error_rate" if error else "accuracy"
        self.reset()

    def reset(self) -> None:
        self.correct, self.count = 0, 0

    def accumulate(self, pred: Tensor, targ: Tensor) -> None:
        p, t = _flat_pair(pred, targ)
        self.correct += int((p == t).sum())
        self.count += t.numel()

    @property
    def value(self) -> float:
        acc = self.correct / self.count if self.count else float("nan")
        return 1 - acc if self.error else acc


@accumulates(Accuracy)
def accuracy(input: Tensor, targs: Tensor) -> Tensor:
    """Share of items whose argmax over the last dimension equals the target."""
    pred, targ = _flat_pair(input, targs)
    return (pred == targ).float().mean()


@accumulates(lambda: Accuracy(error=True))
def error_rate(input: Tensor, targs: Tensor) -> Tensor:
    """1 - accuracy."""
    return 1 - accuracy(input, targs)


def accuracy_thresh(y_pred: Tensor, y_true: Tensor, thresh: float = 0.5, sigmoid: bool = True) -> Tensor:
    """Multi-label accuracy: each (sigmoid) probability compared with `thresh` against each label."""
    if sigmoid:
        y_pred = y_pred.sigmoid()
    return ((y_pred > thresh) == y_true.bool()).float().mean()


def top_k_accuracy(input: Tensor, targs: Tensor, k: int = 5) -> Tensor:
    """Share of items whose target is among the `k` highest scores."""
    top = input.topk(k=k, dim=-1).indices
    return (top == targs.view(-1, 1)).any(dim=-1).float().mean()


def mse(pred: Tensor, targ: Tensor) -> Tensor:
    """Mean squared error."""
    return ((pred.float().view(-1) - targ.float().view(-1)) ** 2).mean()


def mae(pred: Tensor, targ: Tensor) -> Tensor:
    """Mean absolute error."""
    return (pred.float().view(-1) - targ.float().view(-1)).abs().mean()


@accumulates(lambda: WholeSetMetric(_rmse))
def rmse(pred: Tensor, targ: Tensor) -> Tensor:
    """Root mean squared error (over the whole set, not a mean of per-batch roots)."""
    return _rmse(pred, targ)


def _rmse(pred: Tensor, targ: Tensor) -> Tensor:
    return mse(pred, targ).sqrt()


@accumulates(lambda: WholeSetMetric(_r2))
def r2_score(pred: Tensor, targ: Tensor) -> Tensor:
    """Coefficient of determination, 1 - SS_res / SS_tot."""
    return _r2(pred, targ)


def _r2(pred: Tensor, targ: Tensor) -> Tensor:
    pred, targ = pred.float().view(-1), targ.float().view(-1)
    return 1 - ((targ - pred) ** 2).sum() / ((targ - targ.mean()) ** 2).sum()


@accumulates(lambda: WholeSetMetric(_exp_rmspe))
def exp_rmspe(pred: Tensor, targ: Tensor) -> Tensor:
    """Root mean squared percentage error after exp() of log-space predictions (Rossmann, F3:8450)."""
    return _exp_rmspe(pred, targ)


def _exp_rmspe(pred: Tensor, targ: Tensor) -> Tensor:
    pred, targ = torch.exp(pred.float().view(-1)), torch.exp(targ.float().view(-1))
    return (((targ - pred) / targ) ** 2).mean().sqrt()


def _fbeta(y_pred: Tensor, y_true: Tensor, thresh: float = 0.2, beta: float = 2.0, eps: float = 1e-9,
           sigmoid: bool = True) -> Tensor:
    beta2 = beta ** 2
    if sigmoid:
        y_pred = y_pred.sigmoid()
    y_pred, y_true = (y_pred > thresh).float(), y_true.float()
    tp = (y_pred * y_true).sum(dim=1)
    prec = tp / (y_pred.sum(dim=1) + eps)
    rec = tp / (y_true.sum(dim=1) + eps)
    return ((prec * rec) / (prec * beta2 + rec + eps) * (1 + beta2)).mean()


@accumulates(lambda **kw: WholeSetMetric(partial(_fbeta, **kw)))
def fbeta(y_pred: Tensor, y_true: Tensor, thresh: float = 0.2, beta: float = 2.0, eps: float = 1e-9,
          sigmoid: bool = True) -> Tensor:
    """Multi-label F-beta averaged over items (Kaggle Planet's F2, F3:3711-3723)."""
    return _fbeta(y_pred, y_true, thresh, beta, eps, sigmoid)


class Dice(Metric):
    """Dice (or IoU) over the whole set from summed intersections and unions; binary targets."""

    name = "dice"

    def __init__(self, iou: bool = False, eps: float = 1e-8):
        self.iou, self.eps = iou, eps
        self.reset()

    def reset(self) -> None:
        self.inter, self.union = 0.0, 0.0

    def accumulate(self, pred: Tensor, targ: Tensor) -> None:
        inter, union = _dice_parts(pred, targ)
        self.inter += inter
        self.union += union

    @property
    def value(self) -> float:
        return _dice_value(self.inter, self.union, self.iou, self.eps)


def _dice_parts(input: Tensor, targs: Tensor) -> tuple[float, float]:
    n = targs.shape[0]
    pred, targ = input.argmax(dim=1).view(n, -1), targs.view(n, -1)
    return float((pred * targ).sum()), float((pred + targ).sum())


def _dice_value(inter: float, union: float, iou: bool, eps: float) -> float:
    if union == 0:
        return 1.0
    return inter / (union - inter + eps) if iou else 2.0 * inter / (union + eps)


@accumulates(Dice)
def dice(input: Tensor, targs: Tensor, iou: bool = False, eps: float = 1e-8) -> Tensor:
    """Dice coefficient of argmax(input, dim=1) against binary targets (v1's definition)."""
    return torch.tensor(_dice_value(*_dice_parts(input, targs), iou, eps))


class ConfusionMatrixMetric(Metric):
    """Accumulates a confusion matrix; subclasses read precision/recall/F-beta from it."""

    def __init__(self, average: str | None = "macro", pos_label: int = 1):
        if average not in ("binary", "micro", "macro", "weighted", None):
            raise TrainingError(f"average must be binary, micro, macro, weighted or None, got {average!r}")
        self.average, self.pos_label = average, pos_label
        self.reset()

    def reset(self) -> None:
        self.cm: Tensor | None = None

    def accumulate(self, pred: Tensor, targ: Tensor) -> None:
        n_classes = pred.shape[-1]
        p, t = pred.argmax(dim=-1).view(-1).cpu(), targ.view(-1).cpu().long()
        counts = torch.bincount(t * n_classes + p, minlength=n_classes * n_classes).view(n_classes, n_classes)
        self.cm = counts if self.cm is None else self.cm + counts

    def _scores(self) -> tuple[Tensor, Tensor, Tensor]:
        cm = self.cm.double()
        tp = cm.diag()
        return tp / cm.sum(dim=0).clamp(min=1), tp / cm.sum(dim=1).clamp(min=1), cm.sum(dim=1)

    def _reduce(self, per_class: Tensor, support: Tensor, micro: Callable[[], float]) -> float:
        if self.average == "binary":
            return float(per_class[self.pos_label])
        if self.average == "micro":
            return micro()
        if self.average == "weighted":
            return float((per_class * support).sum() / support.sum())
        if self.average == "macro":
            return float(per_class.mean())
        return per_class.tolist()

    def _micro(self) -> float:
        return float(self.cm.diag().sum() / self.cm.sum())


class Precision(ConfusionMatrixMetric):
    """Precision from the whole-set confusion matrix, averaged over classes (`average`)."""

    name = "precision"

    @property
    def value(self) -> float:
        prec, _, support = self._scores()
        return self._reduce(prec, support, self._micro)


class Recall(ConfusionMatrixMetric):
    """Recall from the whole-set confusion matrix, averaged over classes (`average`)."""

    name = "recall"

    @property
    def value(self) -> float:
        _, rec, support = self._scores()
        return self._reduce(rec, support, self._micro)


class FBeta(ConfusionMatrixMetric):
    """F-beta from the whole-set confusion matrix, averaged over classes (`average`)."""

    name = "f_beta"

    def __init__(self, average: str | None = "macro", pos_label: int = 1, beta: float = 1.0):
        super().__init__(average, pos_label)
        self.beta = beta

    @property
    def value(self) -> float:
        prec, rec, support = self._scores()
        b2 = self.beta ** 2
        f = (1 + b2) * prec * rec / (b2 * prec + rec).clamp(min=1e-12)
        return self._reduce(f, support, self._micro)


class F1Score(FBeta):
    """F1: FBeta with beta=1."""

    name = "f1_score"

    def __init__(self, average: str | None = "macro", pos_label: int = 1):
        super().__init__(average, pos_label, beta=1.0)
