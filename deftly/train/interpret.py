"""ClassificationInterpretation: what a classifier gets wrong (lesson 1).

Built from one pass over a split (`get_preds(with_loss=True)`); the plots draw items through their
own `show`, so any item type that can show itself works.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from deftly.core.errors import ConfigError, DataError
from deftly.data.databunch import DatasetType


class ClassificationInterpretation:
    """Predictions, targets and per-item losses of a split, with the course's views of them."""

    def __init__(self, learn: Any, preds: Tensor, y_true: Tensor, losses: Tensor,
                 ds_type: DatasetType = DatasetType.Valid):
        if y_true.dtype != torch.long or preds.ndim != 2:
            raise ConfigError("ClassificationInterpretation needs single-label classification "
                              f"(class-index targets); got targets of dtype {y_true.dtype}")
        self.learn, self.preds, self.y_true, self.losses, self.ds_type = learn, preds, y_true, losses, ds_type
        self.pred_class = preds.argmax(dim=1)
        self.data = learn.data
        self.ds = learn.data.dl(ds_type).dataset
        self.classes = list(self.data.classes) if self.data.classes is not None else list(range(preds.shape[1]))
        n = len(self.ds)
        if len(preds) != n:  # the loader skipped unreadable items: map rows back to dataset indexes
            self.ds_idxs = torch.tensor([i for i in range(n) if _readable(self.ds, i)], dtype=torch.long)
        else:
            self.ds_idxs = torch.arange(n)

    @classmethod
    def from_learner(cls, learn: Any, ds_type: DatasetType = DatasetType.Valid,
                     tta: bool = False) -> "ClassificationInterpretation":
        """Run the model over a split once (with test-time augmentation if `tta`)."""
        if tta:
            preds, y, losses = learn.TTA(ds_type=ds_type, with_loss=True)
        else:
            preds, y, losses = learn.get_preds(ds_type, with_loss=True)
        return cls(learn, preds, y, losses, ds_type)

    def top_losses(self, k: int | None = None, largest: bool = True) -> tuple[Tensor, Tensor]:
        """The `k` largest (or smallest) losses and the indexes of their items; all of them sorted
        when `k` is None."""
        losses, pos = self._top(k, largest)
        return losses, self.ds_idxs[pos]

    def _top(self, k: int | None, largest: bool) -> tuple[Tensor, Tensor]:
        k = len(self.losses) if k is None else min(k, len(self.losses))
        return self.losses.topk(k, largest=largest)

    def confusion_matrix(self) -> np.ndarray:
        """Counts with actual classes as rows and predicted classes as columns."""
        n = len(self.classes)
        flat = self.y_true * n + self.pred_class
        return torch.bincount(flat, minlength=n * n).reshape(n, n).numpy()

    def most_confused(self, min_val: int = 1) -> list[tuple[Any, Any, int]]:
        """(actual, predicted, count) for the off-diagonal cells with count >= `min_val`, most first."""
        cm = self.confusion_matrix()
        pairs = [(self.classes[i], self.classes[j], int(cm[i, j]))
                 for i in range(len(cm)) for j in range(len(cm)) if i != j and cm[i, j] >= min_val]
        return sorted(pairs, key=lambda t: -t[2])

    def plot_confusion_matrix(self, normalize: bool = False, title: str = "Confusion matrix", cmap: str = "Blues",
                              norm_dec: int = 2, plot_txt: bool = True, figsize: tuple | None = None,
                              dpi: int | None = None, return_fig: bool = False, **kwargs: Any) -> Any:
        """The confusion matrix as a heat map (rows normalised to 1 with `normalize`)."""
        import matplotlib.pyplot as plt

        cm = self.confusion_matrix().astype(float)
        if normalize:
            cm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        fig = plt.figure(figsize=figsize, dpi=dpi, **kwargs)
        plt.imshow(cm, interpolation="nearest", cmap=cmap)
        plt.title(title)
        ticks = np.arange(len(self.classes))
        plt.xticks(ticks, [str(c) for c in self.classes], rotation=90)
        plt.yticks(ticks, [str(c) for c in self.classes], rotation=0)
        if plot_txt:
            threshold = cm.max() / 2.0
            for i in range(cm.shape[0]):
                for j in range(cm.shape[1]):
                    text = f"{cm[i, j]:.{norm_dec}f}" if normalize else f"{int(cm[i, j])}"
                    plt.text(j, i, text, horizontalalignment="center", verticalalignment="center",
                             color="white" if cm[i, j] > threshold else "black")
        plt.ylabel("Actual")
        plt.xlabel("Predicted")
        plt.grid(False)
        fig.tight_layout()
        return fig if return_fig else None

    def plot_top_losses(self, k: int, largest: bool = True, figsize: tuple = (12, 12),
                        return_fig: bool = False, **kwargs: Any) -> Any:
        """The `k` items with the largest losses, titled prediction/actual/loss/probability of the
        actual class."""
        import matplotlib.pyplot as plt

        losses, idxs = self._top(k, largest)
        cols = int(np.ceil(np.sqrt(len(idxs))))
        rows = int(np.ceil(len(idxs) / max(cols, 1)))
        fig, axes = plt.subplots(rows, cols, figsize=figsize, squeeze=False)
        fig.suptitle("prediction/actual/loss/probability", weight="bold", size=14)
        for ax, loss, i in zip(axes.flat, losses.tolist(), idxs.tolist()):
            item, _ = self.ds[int(self.ds_idxs[i])]
            actual, pred = int(self.y_true[i]), int(self.pred_class[i])
            title = (f"{self.classes[pred]}/{self.classes[actual]} / {loss:.2f} / "
                     f"{float(self.preds[i, actual]):.2f}")
            item.show(ax=ax, title=title, **kwargs)
        for ax in list(axes.flat)[len(idxs):]:
            ax.axis("off")
        return fig if return_fig else None


def _readable(ds: Any, i: int) -> bool:
    try:
        ds.x.raw(i)
    except DataError:
        return False
    return True
