"""Freezing layer groups (with BatchNorm kept trainable or not) and weight decay, checked on the
parameters themselves and on one optimizer step computed by hand."""
from __future__ import annotations

import copy
from functools import partial

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from deftly.data.databunch import DataBunch
from deftly.train import CrossEntropyFlat, Learner


def bn_model(hidden=(32, 16)):
    torch.manual_seed(0)
    a, b = hidden
    return nn.Sequential(
        nn.Sequential(nn.Linear(784, a), nn.BatchNorm1d(a), nn.ReLU()),
        nn.Sequential(nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()),
        nn.Linear(b, 10),
    )


@pytest.fixture
def data(mnist_sample):
    (x, y), (xv, yv) = mnist_sample
    return DataBunch.create(TensorDataset(x[:256], y[:256]), TensorDataset(xv[:64], yv[:64]), bs=32, device="cpu")


def make_learner(data, model=None, **kwargs):
    model = bn_model() if model is None else model
    return Learner(data, model, loss_func=CrossEntropyFlat(), layer_groups=[model[0], model[1], model[2]],
                   progress=False, **kwargs)


def trainable(learn):
    """requires_grad of (linear weight, linear bias, bn weight, bn bias) per body group, and of the head."""
    m = learn.model
    body = [[g[0].weight.requires_grad, g[0].bias.requires_grad, g[1].weight.requires_grad,
             g[1].bias.requires_grad] for g in (m[0], m[1])]
    head = [m[2].weight.requires_grad, m[2].bias.requires_grad]
    return body, head


FROZEN_KEEP_BN = [False, False, True, True]
FROZEN_ALL = [False, False, False, False]
TRAINS = [True, True, True, True]


# --- requires_grad --------------------------------------------------------------------------------
def test_freeze_keeps_batchnorm_trainable_by_default(data):
    learn = make_learner(data)
    assert trainable(learn) == ([TRAINS, TRAINS], [True, True])
    learn.freeze()
    assert trainable(learn) == ([FROZEN_KEEP_BN, FROZEN_KEEP_BN], [True, True])


def test_freeze_with_train_bn_false_freezes_batchnorm(data):
    learn = make_learner(data, train_bn=False)
    learn.freeze()
    assert trainable(learn) == ([FROZEN_ALL, FROZEN_ALL], [True, True])
    learn.unfreeze()
    assert trainable(learn) == ([TRAINS, TRAINS], [True, True])


def test_unfreeze_makes_everything_trainable(data):
    learn = make_learner(data)
    learn.freeze()
    learn.unfreeze()
    assert trainable(learn) == ([TRAINS, TRAINS], [True, True])
    assert all(p.requires_grad for p in learn.model.parameters())


@pytest.mark.parametrize("n", [1, -2])
def test_freeze_to_first_group(data, n):
    learn = make_learner(data)
    learn.freeze()
    learn.freeze_to(n)  # groups [n:] train: the first group is frozen, the second unfrozen again
    assert trainable(learn) == ([FROZEN_KEEP_BN, TRAINS], [True, True])


def test_freeze_to_two_is_freeze(data):
    learn = make_learner(data, train_bn=False)
    learn.freeze_to(2)
    assert trainable(learn) == ([FROZEN_ALL, FROZEN_ALL], [True, True])
    learn.freeze_to(-1)
    assert trainable(learn) == ([FROZEN_ALL, FROZEN_ALL], [True, True])


# --- training after freeze ------------------------------------------------------------------------
def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("opt", ["adamw", "sgd"])
@pytest.mark.parametrize("train_bn", [True, False])
def test_training_after_freeze_leaves_frozen_weights_identical(data, opt, train_bn):
    opt_func = {"adamw": {}, "sgd": {"opt_func": partial(torch.optim.SGD, momentum=0.9)}}[opt]
    learn = make_learner(data, wd=0.1, train_bn=train_bn, **opt_func)  # weight decay must not touch them
    learn.freeze()
    before = _snapshot(learn.model)
    learn.fit(1, 1e-2)
    after = learn.model.state_dict()
    for name in ("0.0.weight", "0.0.bias", "1.0.weight", "1.0.bias"):  # frozen linear layers
        assert torch.equal(after[name], before[name]), name
    for name in ("0.1.weight", "0.1.bias", "1.1.weight", "1.1.bias"):  # BatchNorm of frozen groups
        assert torch.equal(after[name], before[name]) is (not train_bn), name
    for name in ("2.weight", "2.bias"):  # the head trains
        assert not torch.equal(after[name], before[name]), name

    learn.unfreeze()
    before = _snapshot(learn.model)
    learn.fit(1, 1e-2)
    after = learn.model.state_dict()
    for name in ("0.0.weight", "1.0.weight", "0.1.weight", "2.weight"):
        assert not torch.equal(after[name], before[name]), name


# --- weight decay ---------------------------------------------------------------------------------
def _no_decay_ids(model):
    """BatchNorm weights and biases, and every bias: the parameters bn_wd=False exempts."""
    ids = {id(p) for name, p in model.named_parameters() if name.endswith("bias")}
    ids |= {id(p) for m in model.modules() if isinstance(m, nn.BatchNorm1d) for p in m.parameters()}
    return ids


def test_true_wd_with_adam_puts_wd_in_adamw_groups(data):
    learn = make_learner(data, wd=0.1, true_wd=True)
    learn.fit(1, 1e-3)
    assert isinstance(learn.opt, torch.optim.AdamW)
    assert learn.opt.param_groups and all(g["weight_decay"] == pytest.approx(0.1) for g in learn.opt.param_groups)
    assert all(g["betas"] == pytest.approx((0.9, 0.99)) for g in learn.opt.param_groups)
    # every parameter is in exactly one group, and each group knows its layer group
    ids = [id(p) for g in learn.opt.param_groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in learn.model.parameters())
    assert sorted({g["layer_group"] for g in learn.opt.param_groups}) == [0, 1, 2]


def test_bn_wd_false_exempts_batchnorm_and_bias_groups(data):
    learn = make_learner(data, wd=0.1, bn_wd=False)
    learn.fit(1, 1e-3)
    no_decay = _no_decay_ids(learn.model)
    assert sum(g["bn_group"] for g in learn.opt.param_groups) == 3  # one per layer group
    for g in learn.opt.param_groups:
        in_group = {id(p) for p in g["params"]}
        if g["bn_group"]:
            assert in_group <= no_decay and g["weight_decay"] == 0.0
        else:
            assert not (in_group & no_decay) and g["weight_decay"] == pytest.approx(0.1)


def test_fit_wd_argument_overrides(data):
    learn = make_learner(data, wd=0.1)
    learn.fit(1, 1e-3, wd=0.3)
    assert all(g["weight_decay"] == pytest.approx(0.3) for g in learn.opt.param_groups)


def test_true_wd_false_with_adam_is_l2(data):
    learn = make_learner(data, wd=0.1, true_wd=False)
    learn.fit(1, 1e-3)
    assert type(learn.opt) is torch.optim.Adam  # L2 added to the gradient, not decoupled
    assert all(g["weight_decay"] == pytest.approx(0.1) for g in learn.opt.param_groups)
    assert all(g["betas"] == pytest.approx((0.9, 0.99)) for g in learn.opt.param_groups)


def _one_batch_data(mnist_sample, n=16):
    (x, y), _ = mnist_sample
    x, y = x[:n].clone(), y[:n].clone()
    # one training batch (n == bs), no validation set: a fit is exactly one optimizer step
    return DataBunch.create(TensorDataset(x, y), None, bs=n, device="cpu"), x, y


def _grads_by_hand(model, x, y):
    ref = copy.deepcopy(model).train()
    loss = nn.CrossEntropyLoss()(ref(x), y)
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    return [p.detach().clone() for p in model.parameters()], [g.detach() for g in grads]


@pytest.mark.parametrize("bn_wd", [True, False])
def test_sgd_true_wd_one_step_by_hand(mnist_sample, bn_wd):
    data, x, y = _one_batch_data(mnist_sample)
    model = bn_model(hidden=(8, 8))
    lr, wd = 0.1, 0.1
    learn = make_learner(data, model=model, opt_func=torch.optim.SGD, wd=wd, true_wd=True, bn_wd=bn_wd)
    params, grads = _grads_by_hand(model, x, y)
    no_decay = _no_decay_ids(model)
    learn.fit(1, lr)
    assert type(learn.opt) is torch.optim.SGD
    assert all(g["weight_decay"] == 0.0 for g in learn.opt.param_groups)  # decay is decoupled, by hand
    assert len(learn.recorder.losses) == 1
    for (name, p), p0, g in zip(model.named_parameters(), params, grads):
        decay = 0.0 if (not bn_wd and id(p) in no_decay) else wd
        expected = p0 * (1 - lr * decay) - lr * g
        assert torch.allclose(p.detach(), expected, rtol=0, atol=1e-6), name
        # and the decay is really there (or really absent): not just a plain SGD step
        plain = p0 - lr * g
        assert torch.allclose(p.detach(), plain, rtol=0, atol=1e-6) is (decay == 0.0 or bool((p0 == 0).all())), name


def test_sgd_true_wd_uses_each_groups_lr(mnist_sample):
    data, x, y = _one_batch_data(mnist_sample)
    model = bn_model(hidden=(8, 8))
    wd = 0.2
    learn = make_learner(data, model=model, opt_func=torch.optim.SGD, wd=wd, true_wd=True)
    params, grads = _grads_by_hand(model, x, y)
    group_of = {id(p): i for i, g in enumerate(learn.layer_groups) for p in g.parameters()}
    lrs = [0.3 / 3, 0.3 / 3, 0.3]
    learn.fit(1, slice(0.3))
    for (name, p), p0, g in zip(model.named_parameters(), params, grads):
        lr = lrs[group_of[id(p)]]
        assert torch.allclose(p.detach(), p0 * (1 - lr * wd) - lr * g, rtol=0, atol=1e-6), name


def test_adamw_first_step_by_hand(mnist_sample):
    """AdamW's first step is p * (1 - lr * wd) - lr * g / (|g| + eps): the decay is decoupled from Adam."""
    data, x, y = _one_batch_data(mnist_sample)
    model = bn_model(hidden=(8, 8))
    lr, wd = 1e-2, 0.1
    learn = make_learner(data, model=model, wd=wd, bn_wd=False)
    params, grads = _grads_by_hand(model, x, y)
    no_decay = _no_decay_ids(model)
    learn.fit(1, lr)
    eps = learn.opt.param_groups[0]["eps"]
    for (name, p), p0, g in zip(model.named_parameters(), params, grads):
        decay = 0.0 if id(p) in no_decay else wd
        expected = p0 * (1 - lr * decay) - lr * g / (g.abs() + eps)
        # a bias just before a BatchNorm has a zero gradient in exact arithmetic; where the float
        # gradient is noise the size of eps, Adam's step is ill-conditioned, so compare elsewhere
        sure = g.abs() > 1e-5
        assert sure.any() or name == "0.0.bias" or name == "1.0.bias", name
        assert torch.allclose(p.detach()[sure], expected[sure], rtol=0, atol=1e-6), name
        assert bool(((p.detach() - p0 * (1 - lr * decay)).abs() <= lr * 1.0001).all()), name


def test_sgd_true_wd_is_part_of_the_step_a_callback_can_cancel(mnist_sample):
    """v1 applied the decoupled decay inside the optimizer's step; a callback that cancels the step
    (as the fp16 GradScaler does on overflow) must leave the weights untouched, decay included."""
    from deftly.train import Callback, CancelStepException

    class SkipStep(Callback):
        def before_step(self):
            raise CancelStepException()

    data, _, _ = _one_batch_data(mnist_sample)
    model = bn_model(hidden=(8, 8))
    learn = make_learner(data, model=model, opt_func=torch.optim.SGD, wd=0.1, true_wd=True)
    before = _snapshot(model)
    learn.fit(1, 0.1, callbacks=[SkipStep()])
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), before[name]), name
