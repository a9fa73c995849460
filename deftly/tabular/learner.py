"""`tabular_learner`: a `TabularModel` sized from the data (embeddings by v1's rule), in a Learner
whose `show_results` is a table of rows with their targets and predictions."""
from __future__ import annotations

from typing import Any, Sequence

import pandas as pd
import torch

from deftly.core.errors import ConfigError
from deftly.data.databunch import DatasetType
from deftly.data.items import EmptyLabelList
from deftly.tabular.data import TabularDataBunch, show_table
from deftly.tabular.models import TabularModel
from deftly.train.learner import Learner

__all__ = ["TabularLearner", "get_tabular_learner", "tabular_learner"]


class TabularLearner(Learner):
    """A Learner on a TabularDataBunch: `show_results` shows rows, targets and predictions as a table."""

    def show_results(self, ds_type: DatasetType = DatasetType.Valid, rows: int = 10, return_df: bool = False,
                     **kwargs: Any) -> pd.DataFrame | None:
        """`rows` rows of the first batch of a split with their target and prediction (shown, or
        returned with `return_df`)."""
        x, y = self.data.one_batch(ds_type, cpu=False)
        preds = self.pred_batch(batch=(x, y))
        df = self.data.decode_batch(x, y, ds_type, rows)
        label = self.data.label_list.y
        if isinstance(label, EmptyLabelList):
            df["prediction"] = [str(p.tolist()) for p in preds[:rows]]
        else:
            shape = y[0].shape if y is not None and len(y) else None
            df["prediction"] = [str(label.reconstruct(_like(label.analyze_pred(p), shape))) for p in preds[:rows]]
        if return_df:
            return df
        show_table(df)
        return None


def _like(pred: torch.Tensor, shape: torch.Size | None) -> torch.Tensor:
    """A decoded prediction in the target's shape (a regression output (1,) against a scalar target)."""
    if shape is not None and pred.numel() == int(torch.Size(shape).numel()):
        return pred.reshape(shape)
    return pred


def tabular_learner(data: TabularDataBunch, layers: Sequence[int], emb_szs: dict[str, int] | None = None,
                    metrics: Any = None, ps: float | Sequence[float] | None = None, emb_drop: float = 0.0,
                    y_range: Sequence[float] | torch.Tensor | None = None, use_bn: bool = True,
                    bn_final: bool = False, **learn_kwargs: Any) -> TabularLearner:
    """A Learner with v1's `TabularModel` for `data`: hidden sizes `layers`, dropout `ps` per hidden
    layer, `emb_drop` on the embeddings, `y_range` for a scaled-sigmoid output; `emb_szs` maps column
    names to embedding widths that replace the default rule. Other arguments go to the Learner."""
    if not isinstance(data, TabularDataBunch):
        raise ConfigError(f"tabular_learner needs a TabularDataBunch, got {type(data).__name__}")
    out = getattr(data, "c", None)
    if not isinstance(out, int) or out < 1:
        raise ConfigError(f"tabular_learner needs the number of outputs from data.c, got {out!r}")
    sizes = data.get_emb_szs(emb_szs)
    n_cont = len(data.cont_names)
    if not sizes and n_cont == 0:
        raise ConfigError("the data has no categorical and no continuous columns: give cat_names or cont_names")
    model = TabularModel(sizes, n_cont, out, layers, ps=ps, emb_drop=emb_drop, y_range=y_range,
                         use_bn=use_bn, bn_final=bn_final)
    return TabularLearner(data, model, metrics=metrics, **learn_kwargs)


#: v1.0's earlier name.
get_tabular_learner = tabular_learner
