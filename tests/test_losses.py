"""Flattened losses and the activations they imply, checked against plain torch and by hand."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deftly.train import BCEWithLogitsFlat, CrossEntropyFlat, L1LossFlat, MSELossFlat
from deftly.train.losses import loss_activation


# --- CrossEntropyFlat ---------------------------------------------------------------------------
def test_cross_entropy_flat_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    targ = torch.tensor([0, 1])
    # -log softmax(logits)[target], averaged, written out by hand
    l0 = -(2.0 - math.log(math.exp(2.0) + math.exp(0.0) + math.exp(-1.0)))
    l1 = -(0.5 - math.log(math.exp(0.5) + math.exp(0.5) + math.exp(3.0)))
    assert float(CrossEntropyFlat()(logits, targ)) == pytest.approx((l0 + l1) / 2, rel=1e-6)


def test_cross_entropy_flat_matches_torch_on_classification():
    torch.manual_seed(0)
    logits, targ = torch.randn(17, 5), torch.randint(0, 5, (17,))
    expected = nn.CrossEntropyLoss()(logits, targ)
    assert torch.allclose(CrossEntropyFlat()(logits, targ), expected, atol=1e-6)
    # a target with a trailing unit axis (N, 1) is flattened to (N,)
    assert torch.allclose(CrossEntropyFlat()(logits, targ[:, None]), expected, atol=1e-6)


def test_cross_entropy_flat_axis1_segmentation_matches_torch():
    torch.manual_seed(1)
    n, c, h, w = 3, 4, 5, 7  # h != w, so a wrong transpose would misalign pixels and labels
    logits = torch.randn(n, c, h, w)
    mask = torch.randint(0, c, (n, h, w))
    expected = nn.CrossEntropyLoss()(logits, mask)
    got = CrossEntropyFlat(axis=1)(logits, mask)
    assert torch.allclose(got, expected, atol=1e-6)
    # a mask with a channel axis (N, 1, H, W), as v1's segmentation masks come
    assert torch.allclose(CrossEntropyFlat(axis=1)(logits, mask[:, None]), expected, atol=1e-6)
    # independent: mean over pixels of -log_softmax over the class axis at the true class
    manual = -F.log_softmax(logits, dim=1).gather(1, mask[:, None]).mean()
    assert torch.allclose(got, manual, atol=1e-6)


def test_cross_entropy_flat_passes_kwargs_to_torch():
    torch.manual_seed(2)
    logits, targ = torch.randn(12, 3), torch.randint(0, 3, (12,))
    weight = torch.tensor([1.0, 2.0, 0.5])
    expected = nn.CrossEntropyLoss(weight=weight)(logits, targ)
    assert torch.allclose(CrossEntropyFlat(weight=weight)(logits, targ), expected, atol=1e-6)
    unweighted = nn.CrossEntropyLoss()(logits, targ)
    assert not torch.allclose(expected, unweighted)  # the weight matters for this data


def test_cross_entropy_flat_activation_is_softmax_over_the_class_axis():
    torch.manual_seed(3)
    x = torch.randn(4, 6)
    act = CrossEntropyFlat().activation(x)
    assert torch.allclose(act, x.exp() / x.exp().sum(dim=1, keepdim=True), atol=1e-6)
    seg = torch.randn(2, 3, 4, 5)
    act = CrossEntropyFlat(axis=1).activation(seg)
    assert act.shape == seg.shape
    assert torch.allclose(act.sum(dim=1), torch.ones(2, 4, 5), atol=1e-6)
    assert torch.allclose(act, seg.exp() / seg.exp().sum(dim=1, keepdim=True), atol=1e-6)


# --- MSELossFlat / L1LossFlat -------------------------------------------------------------------
def test_mse_flat_pred_column_vs_flat_target():
    pred = torch.tensor([[1.0], [2.0], [4.0]])
    targ = torch.tensor([1.5, 2.0, 1.0])
    expected = (0.5 ** 2 + 0 + 3.0 ** 2) / 3
    assert float(MSELossFlat()(pred, targ)) == pytest.approx(expected, rel=1e-6)
    # without flattening, torch would broadcast (3,1) against (3,) into a (3,3) table: a wrong value
    with pytest.warns(UserWarning):
        broadcast = float(nn.MSELoss()(pred, targ))
    assert broadcast != pytest.approx(expected)


def test_mse_flat_int_target_is_floated():
    pred = torch.tensor([[0.5], [2.0], [-1.0], [3.0]])
    targ = torch.tensor([1, 2, 0, 5])  # int64
    loss = MSELossFlat()(pred, targ)
    assert loss.dtype == torch.float32
    assert float(loss) == pytest.approx((0.25 + 0 + 1 + 4) / 4, rel=1e-6)


def test_mse_flat_activation_is_identity():
    x = torch.randn(5, 1)
    assert torch.equal(MSELossFlat().activation(x), x)


def test_l1_flat_by_hand():
    pred = torch.tensor([[1.0], [2.0], [4.0], [0.0]])
    targ = torch.tensor([1.5, 2.0, 1.0, -2.0])
    assert float(L1LossFlat()(pred, targ)) == pytest.approx((0.5 + 0 + 3 + 2) / 4, rel=1e-6)
    assert float(L1LossFlat()(pred, torch.tensor([1, 2, 4, 0]))) == pytest.approx(0.0)  # int target
    x = torch.randn(3, 2)
    assert torch.equal(L1LossFlat().activation(x), x)


# --- BCEWithLogitsFlat --------------------------------------------------------------------------
def test_bce_with_logits_flat_multilabel_by_hand():
    logits = torch.tensor([[0.0, 2.0, -1.0], [1.0, -3.0, 0.5]])
    targ = torch.tensor([[1, 0, 0], [1, 1, 0]])  # int multi-hot labels get floated

    def bce(z, y):
        p = 1 / (1 + math.exp(-z))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    expected = sum(bce(float(z), float(y)) for z, y in zip(logits.view(-1), targ.view(-1))) / 6
    assert float(BCEWithLogitsFlat()(logits, targ)) == pytest.approx(expected, rel=1e-6)
    assert torch.allclose(BCEWithLogitsFlat()(logits, targ),
                          nn.BCEWithLogitsLoss()(logits, targ.float()), atol=1e-6)


def test_bce_with_logits_flat_activation_is_sigmoid():
    x = torch.tensor([[0.0, 2.0], [-1.0, 10.0]])
    assert torch.allclose(BCEWithLogitsFlat().activation(x), 1 / (1 + torch.exp(-x)), atol=1e-7)


# --- loss_activation ----------------------------------------------------------------------------
def test_loss_activation_for_torch_losses():
    x = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, -1.0]])
    softmax = x.exp() / x.exp().sum(dim=1, keepdim=True)
    assert torch.allclose(loss_activation(nn.CrossEntropyLoss())(x), softmax, atol=1e-6)
    assert torch.allclose(loss_activation(F.cross_entropy)(x), softmax, atol=1e-6)
    assert torch.allclose(loss_activation(nn.BCEWithLogitsLoss())(x), 1 / (1 + torch.exp(-x)), atol=1e-7)
    assert torch.allclose(loss_activation(F.binary_cross_entropy_with_logits)(x), torch.sigmoid(x))
    assert torch.equal(loss_activation(nn.MSELoss())(x), x)
    assert torch.equal(loss_activation(F.l1_loss)(x), x)


def test_loss_activation_uses_the_flat_losses_own_activation():
    torch.manual_seed(4)
    seg = torch.randn(2, 3, 4, 4)
    act = loss_activation(CrossEntropyFlat(axis=1))(seg)
    assert torch.allclose(act.sum(dim=1), torch.ones(2, 4, 4), atol=1e-6)  # over axis 1, not the last
    assert torch.allclose(loss_activation(BCEWithLogitsFlat())(seg), torch.sigmoid(seg))
    assert torch.equal(loss_activation(MSELossFlat())(seg), seg)
