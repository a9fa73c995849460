"""Metrics: each function by hand, the confusion-matrix metrics against hand-counted matrices, and a
Learner's validation metrics computed over the WHOLE validation set (not a mean of batch values)."""
from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from deftly.core import TrainingError
from deftly.data.databunch import DataBunch
from deftly.train import (
    BCEWithLogitsFlat, CrossEntropyFlat, Dice, F1Score, FBeta, Learner, MSELossFlat, Precision, Recall,
    accuracy, accuracy_thresh, dice, error_rate, exp_rmspe, fbeta, mae, mse, r2_score, rmse, top_k_accuracy,
)


def _logit(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p / (1 - p))


def _one_hot_scores(labels: list[int], n_classes: int) -> torch.Tensor:
    """Scores whose argmax is `labels` (with some noise in the other columns)."""
    torch.manual_seed(0)
    scores = torch.rand(len(labels), n_classes)
    scores[torch.arange(len(labels)), torch.tensor(labels)] = 5.0
    return scores


# --- plain functions, by hand --------------------------------------------------------------------
def test_accuracy_and_error_rate_by_hand():
    scores = torch.tensor([[0.1, 0.7, 0.2],   # 1
                           [0.9, 0.05, 0.05],  # 0
                           [0.2, 0.3, 0.5],   # 2
                           [0.3, 0.4, 0.3],   # 1
                           [0.6, 0.1, 0.3]])  # 0
    targ = torch.tensor([1, 0, 1, 2, 0])     # right, right, wrong, wrong, right
    assert float(accuracy(scores, targ)) == pytest.approx(3 / 5)
    assert float(error_rate(scores, targ)) == pytest.approx(2 / 5)
    assert float(accuracy(scores, targ[:, None])) == pytest.approx(3 / 5)  # (N, 1) targets


def test_accuracy_thresh_sigmoid_and_thresh():
    probs = torch.tensor([[0.9, 0.4, 0.6, 0.1],
                          [0.2, 0.35, 0.8, 0.7]])
    targ = torch.tensor([[1, 0, 0, 0],
                         [0, 1, 1, 0]])
    # thresh 0.5: predicted [1,0,1,0] / [0,0,1,1] -> agreements 3/4 and 2/4
    assert float(accuracy_thresh(probs, targ, thresh=0.5, sigmoid=False)) == pytest.approx(5 / 8)
    # thresh 0.3: predicted [1,1,1,0] / [0,1,1,1] -> agreements 2/4 and 3/4
    assert float(accuracy_thresh(probs, targ, thresh=0.3, sigmoid=False)) == pytest.approx(5 / 8)
    # thresh 0.65: predicted [1,0,0,0] / [0,0,1,1] -> 4/4 and 2/4
    assert float(accuracy_thresh(probs, targ, thresh=0.65, sigmoid=False)) == pytest.approx(6 / 8)
    # with sigmoid=True the inputs are logits
    assert float(accuracy_thresh(_logit(probs), targ, thresh=0.65)) == pytest.approx(6 / 8)
    # and sigmoid really is applied: probabilities read as logits are all > 0.5 after sigmoid
    assert float(accuracy_thresh(probs, targ, thresh=0.5, sigmoid=True)) == pytest.approx(3 / 8)


def test_top_k_accuracy_by_hand():
    scores = torch.tensor([[0.1, 0.5, 0.3, 0.05, 0.05],
                           [0.4, 0.1, 0.2, 0.25, 0.05],
                           [0.05, 0.1, 0.2, 0.3, 0.35],
                           [0.3, 0.35, 0.1, 0.15, 0.1]])
    targ = torch.tensor([2, 3, 0, 1])
    # ranks of the target: 2nd, 2nd, 5th, 1st
    assert float(top_k_accuracy(scores, targ, k=1)) == pytest.approx(float(accuracy(scores, targ)))
    assert float(top_k_accuracy(scores, targ, k=2)) == pytest.approx(3 / 4)
    assert float(top_k_accuracy(scores, targ, k=4)) == pytest.approx(3 / 4)
    assert float(top_k_accuracy(scores, targ, k=5)) == pytest.approx(1.0)


def test_regression_metrics_by_hand():
    pred = torch.tensor([[2.0], [0.0], [5.0], [1.0]])  # (N, 1) model output
    targ = torch.tensor([1.0, 0.0, 2.0, 3.0])         # (N,) targets
    # errors: 1, 0, 3, -2
    assert float(mse(pred, targ)) == pytest.approx((1 + 0 + 9 + 4) / 4)
    assert float(mae(pred, targ)) == pytest.approx((1 + 0 + 3 + 2) / 4)
    assert float(rmse(pred, targ)) == pytest.approx(math.sqrt(14 / 4))
    # r2: mean target 1.5, SS_tot = 0.25 + 2.25 + 0.25 + 2.25 = 5, SS_res = 14
    assert float(r2_score(pred, targ)) == pytest.approx(1 - 14 / 5)
    assert float(r2_score(targ[:, None] * 1.0, targ)) == pytest.approx(1.0)
    assert float(mse(pred, torch.tensor([1, 0, 2, 3]))) == pytest.approx(14 / 4)  # int targets


def test_exp_rmspe_by_hand():
    sales_pred = torch.tensor([100.0, 200.0, 50.0])
    sales_true = torch.tensor([110.0, 180.0, 50.0])
    pct = [(110 - 100) / 110, (180 - 200) / 180, 0.0]
    expected = math.sqrt(sum(p * p for p in pct) / 3)
    got = float(exp_rmspe(torch.log(sales_pred)[:, None], torch.log(sales_true)))
    assert got == pytest.approx(expected, rel=1e-5)


def _fbeta_by_hand(probs: torch.Tensor, targ: torch.Tensor, thresh: float, beta: float) -> float:
    """Per-item F-beta from counts, (1+b2)tp / ((1+b2)tp + b2 fn + fp), 0 when tp == 0; mean over items."""
    b2, scores = beta * beta, []
    for p_row, t_row in zip(probs.tolist(), targ.tolist()):
        tp = sum(1 for p, t in zip(p_row, t_row) if p > thresh and t == 1)
        fp = sum(1 for p, t in zip(p_row, t_row) if p > thresh and t == 0)
        fn = sum(1 for p, t in zip(p_row, t_row) if p <= thresh and t == 1)
        scores.append((1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp) if tp else 0.0)
    return sum(scores) / len(scores)


def test_fbeta_by_hand():
    probs = torch.tensor([[0.9, 0.1, 0.6, 0.0],    # pred {0,2} true {0,1}: P=R=1/2 -> F2 = 1/2
                          [0.8, 0.7, 0.1, 0.25],   # pred {0,1} true {0,1}: F2 = 1
                          [0.1, 0.15, 0.05, 0.9],  # pred {3}   true {0}:   F2 = 0
                          [0.9, 0.9, 0.9, 0.9]])   # pred all   true {2}:   P=1/4, R=1 -> F2 = 5/(1+... )
    targ = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0]])
    row4 = 5 * (1 / 4) * 1 / (4 * (1 / 4) + 1)  # (1+b2) P R / (b2 P + R) = 1.25/2 = 0.625
    expected = (0.5 + 1.0 + 0.0 + row4) / 4
    assert _fbeta_by_hand(probs, targ, 0.5, 2.0) == pytest.approx(expected)
    assert float(fbeta(probs, targ, thresh=0.5, sigmoid=False)) == pytest.approx(expected, abs=1e-6)
    assert float(fbeta(_logit(probs.clamp(1e-4, 1 - 1e-4)), targ, thresh=0.5)) == pytest.approx(expected, abs=1e-6)
    # the default thresh 0.2 also predicts class 3 for item 1: P=2/3, R=1, F2=10/11
    at_02 = _fbeta_by_hand(probs, targ, 0.2, 2.0)
    assert at_02 == pytest.approx((0.5 + 10 / 11 + 0.0 + row4) / 4)
    assert float(fbeta(probs, targ, sigmoid=False)) == pytest.approx(at_02, abs=1e-6)
    # beta=1 is the plain F1
    assert float(fbeta(probs, targ, thresh=0.5, beta=1.0, sigmoid=False)) == pytest.approx(
        _fbeta_by_hand(probs, targ, 0.5, 1.0), abs=1e-6)


def test_fbeta_against_sklearn_optional():
    metrics = pytest.importorskip("sklearn.metrics")
    torch.manual_seed(0)
    probs, targ = torch.rand(40, 6), (torch.rand(40, 6) > 0.6).long()
    targ[:, 0] = 1  # every item has a label, so sklearn's zero-division rule never applies
    expected = metrics.fbeta_score(targ.numpy(), (probs > 0.3).long().numpy(), beta=2, average="samples")
    assert float(fbeta(probs, targ, thresh=0.3, sigmoid=False)) == pytest.approx(expected, abs=1e-6)


def test_dice_and_iou_by_hand():
    # two images 2x3, two classes; argmax over dim 1 gives the predicted mask
    pred_mask = torch.tensor([[[1, 1, 0], [0, 1, 0]],
                              [[0, 0, 0], [1, 1, 1]]])
    true_mask = torch.tensor([[[1, 0, 0], [0, 1, 1]],
                              [[0, 0, 1], [1, 1, 0]]])
    logits = torch.stack([1 - pred_mask, pred_mask], dim=1).float()  # (N, 2, H, W)
    inter = 2 + 2        # overlapping ones: image0 (0,0),(1,1); image1 (1,0),(1,1)
    sizes = 3 + 3 + 3 + 3
    assert float(dice(logits, true_mask)) == pytest.approx(2 * inter / sizes)
    assert float(dice(logits, true_mask, iou=True)) == pytest.approx(inter / (sizes - inter))
    assert float(dice(logits, true_mask[:, None])) == pytest.approx(2 * inter / sizes)  # (N,1,H,W) mask
    # empty prediction and empty target agree perfectly
    empty = torch.zeros(1, 2, 3)
    assert float(dice(torch.stack([1 - empty, empty], 1), empty.long())) == pytest.approx(1.0)
    # the accumulating class, fed image by image, gives the whole-set value
    for iou, expected in ((False, 2 * inter / sizes), (True, inter / (sizes - inter))):
        m = Dice(iou=iou)
        m.reset()
        m.accumulate(logits[:1], true_mask[:1])
        m.accumulate(logits[1:], true_mask[1:])
        assert m.value == pytest.approx(expected)


# --- confusion-matrix metrics against a hand-counted matrix --------------------------------------
Y_TRUE = [0, 0, 0, 1, 1, 2, 2, 2, 2, 2]
Y_PRED = [0, 1, 0, 1, 2, 2, 2, 0, 2, 1]
# confusion matrix, rows = truth, columns = prediction:
#        p0 p1 p2
#   t0 [ 2, 1, 0 ]   support 3
#   t1 [ 0, 1, 1 ]   support 2
#   t2 [ 1, 1, 3 ]   support 5
#   column sums 3, 3, 4
PREC = [2 / 3, 1 / 3, 3 / 4]
REC = [2 / 3, 1 / 2, 3 / 5]
F1 = [2 / 3, 2 / 5, 2 / 3]
F2 = [2 / 3, 5 / 11, 5 / 8]
SUPPORT = [3, 2, 5]
ACC = 6 / 10


def _feed(metric, batches=((0, 4), (4, 5), (5, 10))):
    scores = _one_hot_scores(Y_PRED, 3)
    targ = torch.tensor(Y_TRUE)
    metric.reset()
    for a, b in batches:  # uneven batches, accumulated
        metric.accumulate(scores[a:b], targ[a:b])
    return metric.value


def _weighted(per_class):
    return sum(v * s for v, s in zip(per_class, SUPPORT)) / sum(SUPPORT)


@pytest.mark.parametrize("cls, per_class", [(Precision, PREC), (Recall, REC), (F1Score, F1)])
def test_confusion_metrics_macro_weighted_micro(cls, per_class):
    assert _feed(cls(average="macro")) == pytest.approx(sum(per_class) / 3)
    assert _feed(cls(average="weighted")) == pytest.approx(_weighted(per_class))
    assert _feed(cls(average="micro")) == pytest.approx(ACC)
    assert _feed(cls(average=None)) == pytest.approx(per_class)


def test_fbeta_class_beta2():
    assert _feed(FBeta(beta=2.0)) == pytest.approx(sum(F2) / 3)
    assert _feed(FBeta(average="weighted", beta=2.0)) == pytest.approx(_weighted(F2))
    assert _feed(FBeta(average=None, beta=2.0)) == pytest.approx(F2)


def test_confusion_metrics_binary():
    y_true = [1, 1, 1, 0, 0, 0, 0, 1]
    y_pred = [1, 0, 1, 1, 0, 0, 0, 1]
    # class 1: tp=3 (idx 0, 2, 7), fn=1 (idx 1), fp=1 (idx 3)
    scores, targ = _one_hot_scores(y_pred, 2), torch.tensor(y_true)

    def run(m):
        m.reset()
        m.accumulate(scores[:3], targ[:3])
        m.accumulate(scores[3:], targ[3:])
        return m.value

    assert run(Precision(average="binary")) == pytest.approx(3 / 4)
    assert run(Recall(average="binary")) == pytest.approx(3 / 4)
    assert run(F1Score(average="binary")) == pytest.approx(3 / 4)
    y_pred2 = [1, 0, 0, 1, 1, 0, 0, 1]  # class 1: tp=2 (idx 0, 7), fp=2 (idx 3, 4), fn=2 (idx 1, 2)
    scores = _one_hot_scores(y_pred2, 2)
    assert run(Precision(average="binary")) == pytest.approx(2 / 4)
    y_pred3 = [1, 1, 1, 0, 0, 0, 0, 1]  # class 1: tp=4, fp=0, fn=0; perfect
    scores = _one_hot_scores(y_pred3, 2)
    assert run(Recall(average="binary")) == pytest.approx(1.0)
    y_pred4 = [1, 0, 0, 0, 0, 0, 0, 0]  # class 1: tp=1, fp=0, fn=3; class 0: tp=4, fp=3, fn=0
    scores = _one_hot_scores(y_pred4, 2)
    assert run(Precision(average="binary")) == pytest.approx(1.0)
    assert run(Recall(average="binary")) == pytest.approx(1 / 4)
    assert run(F1Score(average="binary")) == pytest.approx(2 * 1 * 0.25 / 1.25)
    assert run(Precision(average="binary", pos_label=0)) == pytest.approx(4 / 7)
    assert run(Recall(average="binary", pos_label=0)) == pytest.approx(1.0)
    assert run(FBeta(average="binary", beta=2.0)) == pytest.approx(5 * 0.25 / (4 * 1 + 0.25))


def test_confusion_metrics_class_never_predicted_scores_zero():
    y_true, y_pred = [0, 1, 2, 2], [0, 0, 2, 2]  # class 1 never predicted: precision 0 (sklearn's value)
    m = Precision(average=None)
    m.reset()
    m.accumulate(_one_hot_scores(y_pred, 3), torch.tensor(y_true))
    assert m.value == pytest.approx([1 / 2, 0.0, 1.0])
    f = F1Score(average="macro")
    f.reset()
    f.accumulate(_one_hot_scores(y_pred, 3), torch.tensor(y_true))
    assert f.value == pytest.approx((2 / 3 + 0 + 1) / 3)


def test_confusion_metrics_against_sklearn_optional():
    metrics = pytest.importorskip("sklearn.metrics")
    for average in ("macro", "micro", "weighted"):
        kw = dict(average=average, zero_division=0)
        assert _feed(Precision(average=average)) == pytest.approx(metrics.precision_score(Y_TRUE, Y_PRED, **kw))
        assert _feed(Recall(average=average)) == pytest.approx(metrics.recall_score(Y_TRUE, Y_PRED, **kw))
        assert _feed(FBeta(average=average, beta=2)) == pytest.approx(metrics.fbeta_score(Y_TRUE, Y_PRED, beta=2, **kw))


def test_confusion_metric_bad_average():
    with pytest.raises(TrainingError, match="average"):
        Precision(average="sample")


# --- a Learner computes validation metrics over the whole validation set -------------------------
def _databunch(x, y, xv, yv, bs=32, val_bs=32):
    return DataBunch.create(TensorDataset(x, y), TensorDataset(xv, yv), bs=bs, val_bs=val_bs, device="cpu")


def _batch_values(func, preds, targs, val_bs):
    return [float(func(preds[i:i + val_bs], targs[i:i + val_bs])) for i in range(0, len(targs), val_bs)]


@pytest.fixture
def mnist_regression(mnist_sample):
    """Regress the digit's label (as a number) from its pixels: 300 train, 100 valid items."""
    (x, y), (xv, yv) = mnist_sample
    return x[:300], y[:300].float(), xv[:100], yv[:100].float()


def _rmse_hand(p, t):
    p, t = p.double().view(-1), t.double().view(-1)
    return math.sqrt(float(((p - t) ** 2).sum()) / len(t))


def _r2_hand(p, t):
    p, t = p.double().view(-1), t.double().view(-1)
    mean = float(t.sum()) / len(t)
    return 1 - float(((t - p) ** 2).sum()) / float(((t - mean) ** 2).sum())


@pytest.mark.parametrize("name, func, hand", [("rmse", rmse, _rmse_hand), ("r2_score", r2_score, _r2_hand)])
def test_validate_regression_metric_is_whole_set(mnist_regression, name, func, hand):
    x, y, xv, yv = mnist_regression
    torch.manual_seed(0)
    val_bs = 16  # 100 items: six batches of 16 and one of 4
    learn = Learner(_databunch(x, y, xv, yv, val_bs=val_bs), nn.Linear(784, 1), loss_func=MSELossFlat(),
                    metrics=[func], progress=False)
    preds, targs = learn.get_preds()
    assert preds.shape == (100, 1) and torch.equal(targs, yv)
    whole = hand(preds, targs)
    per_batch = _batch_values(hand, preds, targs, val_bs)
    batch_mean = sum(per_batch) / len(per_batch)
    weighted = sum(v * len(targs[i:i + val_bs]) for v, i in zip(per_batch, range(0, 100, val_bs))) / 100
    assert abs(batch_mean - whole) > 1e-3 * abs(whole) and abs(weighted - whole) > 1e-3 * abs(whole)

    loss, value = learn.validate()
    assert value == pytest.approx(whole, rel=1e-5)
    assert loss == pytest.approx(float(((preds.view(-1) - targs) ** 2).mean()), rel=1e-5)

    # during fit, the epoch's row is computed the same way (the model does not change after validation)
    learn.fit(1, 1e-4)
    preds, targs = learn.get_preds()
    row = learn.recorder.last_values
    assert learn.recorder.names == ["epoch", "train_loss", "valid_loss", name, "time"]
    assert row[name] == pytest.approx(hand(preds, targs), rel=1e-5)
    assert row["valid_loss"] == pytest.approx(float(((preds.view(-1) - targs) ** 2).mean()), rel=1e-5)


@pytest.fixture
def mnist_multilabel(mnist_sample):
    """Four real multi-label targets per digit: even, greater than 4, has a closed loop, is a one."""
    (x, y), (xv, yv) = mnist_sample

    def labels(d):
        loop = torch.isin(d, torch.tensor([0, 4, 6, 8, 9]))
        return torch.stack([d % 2 == 0, d > 4, loop, d == 1], dim=1).float()
    return x[:400], labels(y[:400]), xv[:150], labels(yv[:150])


def test_fbeta_in_learner_is_whole_set_and_partial_keeps_name(mnist_multilabel):
    x, y, xv, yv = mnist_multilabel
    torch.manual_seed(0)
    val_bs = 32  # 150 items: 4 batches of 32 and one of 22
    learn = Learner(_databunch(x, y, xv, yv, bs=64, val_bs=val_bs), nn.Linear(784, 4),
                    loss_func=BCEWithLogitsFlat(), metrics=[fbeta, partial(fbeta, thresh=0.3), accuracy_thresh],
                    progress=False)
    learn.fit(2, 1e-3)
    assert learn.recorder.names == ["epoch", "train_loss", "valid_loss", "fbeta", "fbeta", "accuracy_thresh", "time"]
    probs, targs = learn.get_preds()  # sigmoid applied (BCE's activation)
    assert float(probs.min()) >= 0 and float(probs.max()) <= 1
    f02, f03 = _fbeta_by_hand(probs, targs, 0.2, 2.0), _fbeta_by_hand(probs, targs, 0.3, 2.0)
    assert abs(f02 - f03) > 1e-3  # the partial's thresh matters on this data
    acc = float(((probs > 0.5).float() == targs).float().mean())
    _, _, _, m02, m03, m_acc, _ = learn.recorder.values[-1]
    assert m02 == pytest.approx(f02, abs=1e-5)
    assert m03 == pytest.approx(f03, abs=1e-5)
    assert m_acc == pytest.approx(acc, abs=1e-6)
    unweighted = _batch_values(lambda p, t: _fbeta_by_hand(p, t, 0.3, 2.0), probs, targs, val_bs)
    assert abs(sum(unweighted) / len(unweighted) - f03) > 1e-4  # a batch mean would be wrong here
    _, v02, v03, v_acc = learn.validate()
    assert (v02, v03) == (pytest.approx(f02, abs=1e-5), pytest.approx(f03, abs=1e-5))
    assert v_acc == pytest.approx(acc, abs=1e-6)


def _confusion(pred, targ, n):
    cm = [[0] * n for _ in range(n)]
    for p, t in zip(pred.tolist(), targ.tolist()):
        cm[t][p] += 1
    return cm


def test_classification_metrics_in_learner_are_whole_set(mnist_sample):
    (x, y), (xv, yv) = mnist_sample
    x, y, xv, yv = x[:500], y[:500], xv[:203], yv[:203]
    torch.manual_seed(0)
    learn = Learner(_databunch(x, y, xv, yv, bs=64, val_bs=25), nn.Linear(784, 10), loss_func=CrossEntropyFlat(),
                    metrics=[accuracy, error_rate, partial(top_k_accuracy, k=3), Precision(), Recall(average="weighted"),
                             F1Score(average="micro")], progress=False)
    learn.fit(1, 3e-3)
    assert learn.recorder.names[3:-1] == ["accuracy", "error_rate", "top_k_accuracy", "precision", "recall",
                                          "f1_score"]
    probs, targs = learn.get_preds()
    assert torch.allclose(probs.sum(1), torch.ones(203), atol=1e-5)  # softmax applied
    pred = probs.argmax(1)
    cm = _confusion(pred, targs, 10)
    col = [sum(cm[t][p] for t in range(10)) for p in range(10)]
    row = [sum(cm[t]) for t in range(10)]
    prec = [cm[c][c] / col[c] if col[c] else 0.0 for c in range(10)]
    rec = [cm[c][c] / row[c] if row[c] else 0.0 for c in range(10)]
    acc = sum(cm[c][c] for c in range(10)) / 203
    top3 = sum(int(t in probs[i].topk(3).indices.tolist()) for i, t in enumerate(targs.tolist())) / 203
    expected = [acc, 1 - acc, top3, sum(prec) / 10, sum(r * n for r, n in zip(rec, row)) / 203, acc]
    assert 0.5 < acc < 1.0
    assert learn.recorder.values[-1][3:-1] == pytest.approx(expected, abs=1e-6)
    assert learn.validate()[1:] == pytest.approx(expected, abs=1e-6)


def test_dice_in_learner_is_whole_set():
    """Per-pixel binary segmentation of real digits: ink (pixel > 0.5) from a 1x1 convolution."""
    from deftly.datasets import load_mnist_sample
    (_, _), (xv, _) = load_mnist_sample(n_valid=60, flatten=False)
    imgs = xv[:, None]                        # (60, 1, 28, 28)
    masks = (imgs[:, 0] > 0.5).long()         # (60, 28, 28)
    model = nn.Conv2d(1, 2, kernel_size=3, padding=1)
    torch.manual_seed(0)
    nn.init.normal_(model.weight, std=0.5)
    data = DataBunch.create(TensorDataset(imgs, masks), TensorDataset(imgs, masks), bs=16, val_bs=7, device="cpu")
    learn = Learner(data, model, loss_func=CrossEntropyFlat(axis=1), metrics=[dice, partial(dice, iou=True)],
                    progress=False)
    with torch.no_grad():
        out = model(imgs)
    pm = out.argmax(1)
    inter, total = float((pm * masks).sum()), float(pm.sum() + masks.sum())
    loss, d, iou = learn.validate()
    assert d == pytest.approx(2 * inter / total, rel=1e-6)
    assert iou == pytest.approx(inter / (total - inter), rel=1e-6)
    assert loss == pytest.approx(float(nn.CrossEntropyLoss()(out, masks)), rel=1e-5)


# --- errors name the metric and the shapes --------------------------------------------------------
def _mismatched_learner(metric, mnist_sample):
    """A 3-class classifier whose metric is a regression metric: (N, 3) predictions, (N,) targets."""
    (x, y), (xv, yv) = mnist_sample
    torch.manual_seed(0)
    data = _databunch(x[:64], y[:64] % 3, xv[:20], yv[:20] % 3, bs=32, val_bs=8)
    return Learner(data, nn.Linear(784, 3), loss_func=CrossEntropyFlat(), metrics=[metric], progress=False)


def test_mean_metric_on_mismatched_shapes_raises_training_error(mnist_sample):
    learn = _mismatched_learner(mse, mnist_sample)
    with pytest.raises(TrainingError) as info:
        learn.fit(1, 1e-3)
    msg = str(info.value)
    assert "mse" in msg and "(8, 3)" in msg and "(8,)" in msg


def test_metric_returning_wrong_shape_raises_training_error(mnist_sample):
    def per_item_errors(pred, targ):  # forgot the .mean(): returns one value per item
        return (pred.argmax(-1) != targ).float()

    learn = _mismatched_learner(per_item_errors, mnist_sample)
    with pytest.raises(TrainingError, match="per_item_errors") as info:
        learn.fit(1, 1e-3)
    assert "(8, 3)" in str(info.value)


@pytest.mark.parametrize("metric", [rmse, r2_score, exp_rmspe, partial(fbeta, thresh=0.3)],
                         ids=["rmse", "r2_score", "exp_rmspe", "fbeta"])
def test_whole_set_metric_on_mismatched_shapes_raises_training_error(metric, mnist_sample):
    """The whole-set metrics fail when the epoch ends (not in a batch); that must still be a
    TrainingError that names the metric and the shapes, not a bare torch RuntimeError."""
    learn = _mismatched_learner(metric, mnist_sample)
    name = metric.func.__name__ if isinstance(metric, partial) else metric.__name__
    with pytest.raises(TrainingError) as info:
        learn.fit(1, 1e-3)
    msg = str(info.value)
    assert name in msg
    assert "(20, 3)" in msg or "(8, 3)" in msg


@pytest.mark.parametrize("metric", [mse, rmse], ids=["mse", "rmse"])
def test_validate_on_mismatched_shapes_raises_training_error(metric, mnist_sample):
    learn = _mismatched_learner(metric, mnist_sample)
    with pytest.raises(TrainingError, match=metric.__name__):
        learn.validate()
