"""Learning-rate ranges, the one-cycle policy by hand, and what really reaches the torch optimizer's
param groups (per layer group) while a Learner trains."""
from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from deftly.core import ConfigError
from deftly.data.databunch import DataBunch
from deftly.train import Callback, CrossEntropyFlat, Learner, OneCycleScheduler, lr_range

N_TRAIN, BS = 640, 32
N_ITER = N_TRAIN // BS  # 20 training batches per epoch


# --- the schedule, by hand ------------------------------------------------------------------------
def _cos(start, end, pct):
    """Half a cosine wave from start (pct 0) to end (pct 1)."""
    return start + (end - start) * (1 - math.cos(math.pi * pct)) / 2


def expected_one_cycle(it, total, lr_max, moms=(0.95, 0.85), div=25.0, pct_start=0.3, final_div=None):
    """fastai v1's 1cycle: batch `it` of `total` uses these rates (v1 steps the schedule after each
    batch, so batch i of a phase of n batches sits at pct i/n)."""
    final_div = div * 1e4 if final_div is None else final_div
    n1 = int(total * pct_start)
    if it < n1:
        pct = it / n1
        return [lr * _cos(1 / div, 1.0, pct) for lr in lr_max], _cos(moms[0], moms[1], pct)
    pct = (it - n1) / (total - n1)
    return [lr * _cos(1.0, 1 / final_div, pct) for lr in lr_max], _cos(moms[1], moms[0], pct)


# --- lr_range -------------------------------------------------------------------------------------
def test_lr_range_float():
    assert np.allclose(lr_range(1e-3, 3), [1e-3, 1e-3, 1e-3])
    assert np.allclose(lr_range(2e-2, 1), [2e-2])
    assert np.allclose(lr_range(1, 2), [1.0, 1.0])  # an int is a number too


def test_lr_range_slice_hi_only():
    assert np.allclose(lr_range(slice(3e-3), 3), [1e-3, 1e-3, 3e-3])
    assert np.allclose(lr_range(slice(6e-3), 2), [2e-3, 6e-3])
    assert np.allclose(lr_range(slice(1e-3), 1), [1e-3])


def test_lr_range_slice_lo_hi_geometric():
    assert np.allclose(lr_range(slice(1e-5, 1e-3), 3), [1e-5, 1e-4, 1e-3], rtol=1e-9)
    assert np.allclose(lr_range(slice(1e-6, 1e-3), 4), [1e-6, 1e-5, 1e-4, 1e-3], rtol=1e-9)
    assert np.allclose(lr_range(slice(1e-5, 1e-3), 1), [1e-3])


def test_lr_range_list():
    assert np.allclose(lr_range([1e-4, 2e-4, 5e-4], 3), [1e-4, 2e-4, 5e-4])
    assert np.allclose(lr_range((1e-4, 1e-3), 2), [1e-4, 1e-3])
    assert np.allclose(lr_range(np.array([1e-4, 2e-4, 5e-4]), 3), [1e-4, 2e-4, 5e-4])


@pytest.mark.parametrize("lr", [[1e-4, 1e-3], [1e-4, 1e-3, 1e-2, 1e-1]])
def test_lr_range_wrong_length_is_config_error(lr):
    with pytest.raises(ConfigError, match="3 layer groups"):
        lr_range(lr, 3)


def test_lr_range_slice_without_end_is_config_error():
    with pytest.raises(ConfigError):
        lr_range(slice(1e-4, None), 3)


# --- data, model, and a callback that reads the optimizer -------------------------------------------
@pytest.fixture
def data(mnist_sample):
    (x, y), (xv, yv) = mnist_sample
    return DataBunch.create(TensorDataset(x[:N_TRAIN], y[:N_TRAIN]), TensorDataset(xv[:64], yv[:64]),
                            bs=BS, device="cpu")


def three_group_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))


def make_learner(data, **kwargs):
    model = three_group_model()
    return Learner(data, model, loss_func=CrossEntropyFlat(), layer_groups=[model[0], model[2], model[4]],
                   progress=False, **kwargs)


class ReadOptimizer(Callback):
    """Just before each optimizer step, the lr of each layer group and the momentum, as torch sees them."""

    def __init__(self):
        super().__init__()
        self.lrs: list[list[float]] = []
        self.moms: list[float | None] = []

    def before_step(self):
        by_group: dict[int, set] = {}
        moms = set()
        for g in self.learn.opt.param_groups:
            by_group.setdefault(g["layer_group"], set()).add(g["lr"])
            moms.add(g["betas"][0] if "betas" in g else g.get("momentum"))
        assert sorted(by_group) == [0, 1, 2]
        assert all(len(v) == 1 for v in by_group.values()), by_group  # one lr per layer group
        assert len(moms) == 1, moms
        self.lrs.append([by_group[i].pop() for i in range(3)])
        self.moms.append(moms.pop())


# --- OneCycleScheduler.values_at ------------------------------------------------------------------
def _scheduler(data, **kwargs):
    sched = OneCycleScheduler(make_learner(data), **kwargs)
    sched.before_fit()  # reads the learner's layer groups
    return sched


def test_values_at_start_warmup_end_middle_and_last(data):
    hi = np.array([1e-5, 1e-4, 1e-3])
    sched = _scheduler(data, lr_max=slice(1e-5, 1e-3))
    total = 100  # warm-up: 30 iterations
    lrs, mom = sched.values_at(0, total)
    assert np.allclose(lrs, hi / 25, rtol=1e-9) and mom == pytest.approx(0.95)
    lrs, mom = sched.values_at(15, total)  # half-way through the warm-up
    assert np.allclose(lrs, hi * (1 / 25 + 1) / 2, rtol=1e-9) and mom == pytest.approx(0.90)
    lrs, mom = sched.values_at(30, total)  # end of warm-up: the peak
    assert np.allclose(lrs, hi, rtol=1e-9) and mom == pytest.approx(0.85)
    lrs, mom = sched.values_at(65, total)  # half-way through the second phase
    assert np.allclose(lrs, hi * (1 + 1 / 25e4) / 2, rtol=1e-9) and mom == pytest.approx(0.90)
    lrs, mom = sched.values_at(99, total)  # last batch
    exp_lrs, exp_mom = expected_one_cycle(99, total, hi)
    assert np.allclose(lrs, exp_lrs, rtol=1e-9) and mom == pytest.approx(exp_mom)
    assert np.all(lrs < hi / 1000)
    lrs, _ = sched.values_at(total, total)  # where the schedule ends
    assert np.allclose(lrs, hi / 25e4, rtol=1e-9)


def test_values_at_last_iteration_of_long_cycle_reaches_final_lr(data):
    sched = _scheduler(data, lr_max=1e-2)
    lrs, mom = sched.values_at(9999, 10_000)
    assert np.allclose(lrs, 1e-2 / (25 * 1e4), rtol=0.02)
    assert mom == pytest.approx(0.95, abs=1e-6)


def test_values_at_every_iteration_with_custom_arguments(data):
    sched = _scheduler(data, lr_max=[1e-4, 5e-4, 2e-3], moms=(0.9, 0.8), div_factor=10.0, pct_start=0.25,
                       final_div=100.0)
    total = 37
    for it in range(total):
        lrs, mom = sched.values_at(it, total)
        exp_lrs, exp_mom = expected_one_cycle(it, total, [1e-4, 5e-4, 2e-3], moms=(0.9, 0.8), div=10.0,
                                              pct_start=0.25, final_div=100.0)
        assert np.allclose(lrs, exp_lrs, rtol=1e-9), it
        assert mom == pytest.approx(exp_mom), it
    assert np.allclose(sched.values_at(9, total)[0], [1e-4, 5e-4, 2e-3])  # int(37 * 0.25) = 9


def test_bad_pct_start_is_config_error():
    with pytest.raises(ConfigError):
        OneCycleScheduler(lr_max=1e-3, pct_start=1.5)


# --- the real thing: what the optimizer sees --------------------------------------------------------
def test_fit_one_cycle_discriminative_lrs_reach_the_optimizer(data):
    learn = make_learner(data)
    reader = ReadOptimizer()
    learn.fit_one_cycle(1, slice(1e-5, 1e-3), callbacks=[reader])
    assert isinstance(learn.opt, torch.optim.AdamW)
    assert len(reader.lrs) == N_ITER
    hi = [1e-5, 1e-4, 1e-3]
    warm = int(N_ITER * 0.3)
    for it in range(N_ITER):
        exp_lrs, exp_mom = expected_one_cycle(it, N_ITER, hi)
        assert reader.lrs[it] == pytest.approx(exp_lrs, rel=1e-9), it
        assert reader.moms[it] == pytest.approx(exp_mom), it
        lo, mid, top = reader.lrs[it]
        assert mid / lo == pytest.approx(10.0) and top / mid == pytest.approx(10.0)
    assert reader.lrs[0] == pytest.approx([h / 25 for h in hi])
    assert reader.lrs[warm] == pytest.approx(hi)
    assert reader.moms[0] == pytest.approx(0.95) and reader.moms[warm] == pytest.approx(0.85)
    # betas[1] is left alone
    assert all(g["betas"][1] == pytest.approx(0.99) for g in learn.opt.param_groups)

    # the recorder: one entry per training batch, the last layer group's lr, the one-cycle shape
    rec = learn.recorder
    assert len(rec.lrs) == len(rec.moms) == len(rec.losses) == N_ITER
    assert rec.lrs == pytest.approx([lrs[2] for lrs in reader.lrs])
    assert rec.moms == pytest.approx(reader.moms)
    assert int(np.argmax(rec.lrs)) == warm and int(np.argmin(rec.moms)) == warm
    assert all(a < b for a, b in zip(rec.lrs[:warm], rec.lrs[1:warm + 1]))   # rising
    assert all(a > b for a, b in zip(rec.lrs[warm:-1], rec.lrs[warm + 1:]))  # then falling
    assert rec.lrs[-1] < 1e-3 / 25  # ends below where it started


def test_fit_one_cycle_schedule_spans_all_epochs(data):
    learn = make_learner(data)
    learn.fit_one_cycle(2, 1e-3)
    rec = learn.recorder
    total = 2 * N_ITER
    assert len(rec.lrs) == total and rec.nb_batches == [N_ITER, N_ITER]
    warm = int(total * 0.3)
    assert int(np.argmax(rec.lrs)) == warm
    for it in (0, warm - 1, warm, N_ITER, total - 1):  # continues across the epoch boundary
        exp_lrs, exp_mom = expected_one_cycle(it, total, [1e-3])
        assert rec.lrs[it] == pytest.approx(exp_lrs[0], rel=1e-9), it
        assert rec.moms[it] == pytest.approx(exp_mom), it


def test_fit_slice_hi_gives_a_third_to_earlier_groups(data):
    learn = make_learner(data)
    reader = ReadOptimizer()
    learn.fit(1, slice(1e-3), callbacks=[reader])
    assert len(reader.lrs) == N_ITER
    for lrs in reader.lrs:
        assert lrs == pytest.approx([1e-3 / 3, 1e-3 / 3, 1e-3], rel=1e-12)
    assert learn.recorder.lrs == pytest.approx([1e-3] * N_ITER)
    assert learn.recorder.moms == pytest.approx([0.9] * N_ITER)  # fit leaves Adam's beta1 alone


def test_fit_list_of_lrs(data):
    learn = make_learner(data)
    reader = ReadOptimizer()
    learn.fit(1, [1e-4, 2e-4, 5e-4], callbacks=[reader])
    assert all(lrs == pytest.approx([1e-4, 2e-4, 5e-4]) for lrs in reader.lrs)
    with pytest.raises(ConfigError):
        make_learner(data).fit(1, [1e-4, 1e-3])


class CheckSGDUpdate(Callback):
    """Checks that each plain-SGD step moved each parameter by exactly -lr * grad of its layer group."""

    def __init__(self, layer_groups, lrs):
        super().__init__()
        self.owner = {id(p): i for i, g in enumerate(layer_groups) for p in g.parameters()}
        self.lrs, self.steps = lrs, 0

    def before_step(self):
        self.before = [(p, p.detach().clone(), p.grad.detach().clone())
                       for p in self.learn.model.parameters()]

    def after_step(self):
        for p, old, grad in self.before:
            expected = old - self.lrs[self.owner[id(p)]] * grad
            assert torch.allclose(p.detach(), expected, rtol=0, atol=1e-7)
        self.steps += 1


def test_fit_slice_lrs_are_the_ones_applied(data):
    learn = make_learner(data, opt_func=torch.optim.SGD, wd=0.0)
    check = CheckSGDUpdate(learn.layer_groups, [1e-1 / 3, 1e-1 / 3, 1e-1])
    learn.fit(1, slice(1e-1), callbacks=[check])
    assert check.steps == N_ITER


def test_fit_one_cycle_schedules_sgd_momentum(data):
    learn = make_learner(data, opt_func=partial(torch.optim.SGD, momentum=0.9))
    reader = ReadOptimizer()
    learn.fit_one_cycle(1, slice(1e-5, 1e-3), callbacks=[reader])
    assert type(learn.opt) is torch.optim.SGD
    assert all("betas" not in g for g in learn.opt.param_groups)
    for it in range(N_ITER):
        exp_lrs, exp_mom = expected_one_cycle(it, N_ITER, [1e-5, 1e-4, 1e-3])
        assert reader.lrs[it] == pytest.approx(exp_lrs, rel=1e-9)
        assert reader.moms[it] == pytest.approx(exp_mom), it
    warm = int(N_ITER * 0.3)
    assert reader.moms[0] == pytest.approx(0.95) and reader.moms[warm] == pytest.approx(0.85)
    assert learn.recorder.moms == pytest.approx(reader.moms)


def test_fit_one_cycle_constant_mom(data):
    learn = make_learner(data)
    reader = ReadOptimizer()
    learn.fit_one_cycle(1, 1e-3, mom=0.9, callbacks=[reader])
    assert reader.moms == pytest.approx([0.9] * N_ITER)
    assert learn.recorder.moms == pytest.approx([0.9] * N_ITER)
    assert int(np.argmax(learn.recorder.lrs)) == int(N_ITER * 0.3)  # the lr still cycles


@pytest.mark.parametrize("how", ["moms", "mom"])
def test_fit_one_cycle_custom_moms(data, how):
    learn = make_learner(data)
    reader = ReadOptimizer()
    learn.fit_one_cycle(1, 1e-3, callbacks=[reader], **{how: (0.8, 0.7)})
    for it in range(N_ITER):
        assert reader.moms[it] == pytest.approx(expected_one_cycle(it, N_ITER, [1e-3], moms=(0.8, 0.7))[1])
    warm = int(N_ITER * 0.3)
    assert reader.moms[0] == pytest.approx(0.8) and reader.moms[warm] == pytest.approx(0.7)
    assert min(learn.recorder.moms) == pytest.approx(0.7) and max(learn.recorder.moms) == pytest.approx(0.8)


def test_fit_one_cycle_moms_none_leaves_momentum_alone(data):
    learn = make_learner(data, opt_func=partial(torch.optim.SGD, momentum=0.5))
    reader = ReadOptimizer()
    learn.fit_one_cycle(1, 1e-3, moms=None, callbacks=[reader])
    assert reader.moms == pytest.approx([0.5] * N_ITER)
