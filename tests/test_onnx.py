"""deftly.export.onnx: learn.to_onnx for image (single- and multi-label) and tabular (classification,
regression, a loaded export) learners on real bundled data, checked against learn.get_preds / predict
with onnxruntime (1e-4), preprocessing done from the file's metadata alone, and the error paths:
text and collab refused, onnx missing, a model torch cannot export, a failed check, an interrupted write."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from deftly.core import set_seed
from deftly.core.errors import ConfigError, ExportError
from deftly.train.learner import Learner

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

pytestmark = pytest.mark.usefixtures("one_thread")

ATOL = 1e-4


def _session(file: Path):
    return ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])


def _metadata(session) -> dict:
    return json.loads(session.get_modelmeta().custom_metadata_map["deftly"])


def _onnx_preds(session, learn, names: tuple[str, ...]) -> np.ndarray:
    """What the ONNX file gives for every batch of the learner's validation set, in order."""
    outs = []
    for xb, _ in learn.data.valid_dl:
        xs = xb if isinstance(xb, (list, tuple)) else [xb]
        outs.append(session.run(None, {n: x.cpu().numpy() for n, x in zip(names, xs)})[0])
    return np.concatenate(outs)


def _same(onnx_out: np.ndarray, torch_out: torch.Tensor) -> None:
    assert onnx_out.shape == tuple(torch_out.shape) and onnx_out.dtype == np.float32
    diff = float(np.abs(onnx_out - torch_out.numpy()).max())
    assert diff <= ATOL, diff


def _no_temp_files(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if ".tmp-" in p.name]


# ------------------------------------------------------------------------------------------ vision


def test_image_classifier_matches_get_preds_and_predict(tiny, tmp_path):
    from deftly.vision import ImageList, cnn_learner, imagenet_stats, models

    set_seed(0)
    data = (ImageList.from_folder(tiny).filter_by_folder(include=["train", "valid"]).filter_by_rand(0.12, seed=0)
            .split_by_folder().label_from_folder().transform(None, size=28).databunch(bs=16, num_workers=0)
            .normalize(imagenet_stats))
    learn = cnn_learner(data, models.resnet18, pretrained=False, lin_ftrs=[32], ps=0.2, progress=False, path=tmp_path)
    learn.fit(1, 1e-3)
    training = [m.training for m in learn.model.modules()]
    file = learn.to_onnx("digits.onnx")
    assert file == tmp_path / "digits.onnx" and file.is_file()
    assert [m.training for m in learn.model.modules()] == training  # the learner's model is left as it was
    session = _session(file)
    assert [(i.name, i.shape, i.type) for i in session.get_inputs()] == [("image", ["batch", 3, 28, 28],
                                                                          "tensor(float)")]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [("probs", ["batch", 2])]
    meta = _metadata(session)
    assert meta["application"] == "vision" and meta["classes"] == ["3", "7"]
    assert meta["output"]["activation"] == "softmax"
    pre = meta["preprocess"]
    assert pre["size"] == [28, 28] and pre["channels"] == 3 and pre["convert_mode"] == "RGB"
    assert pre["mean"] == pytest.approx(imagenet_stats[0]) and pre["std"] == pytest.approx(imagenet_stats[1])

    preds, _ = learn.get_preds()
    _same(_onnx_preds(session, learn, ("image",)), preds)

    # a consumer without deftly: decode, scale and normalise as the metadata says (the digits are
    # already 28x28, so there is nothing to resize), then compare with learn.predict
    import PIL.Image

    files = list(data.valid_ds.x.items[:5])
    batch = np.stack([np.asarray(PIL.Image.open(f).convert(pre["convert_mode"]), dtype=np.float32) * pre["scale"]
                      for f in files]).transpose(0, 3, 1, 2)
    mean, std = (np.array(pre[k], np.float32)[:, None, None] for k in ("mean", "std"))
    batch = (batch - mean) / std
    out = session.run(None, {"image": batch.astype(np.float32)})[0]
    _same(out, torch.stack([learn.predict(f)[2] for f in files]))


def test_multi_label_outputs_sigmoid_probabilities(planet, tmp_path):
    from deftly.vision import cnn_learner, models
    from test_export import planet_bunch  # tests/ is on the path, as test_serve_browser uses it

    set_seed(0)
    data = planet_bunch(planet, bs=8)
    learn = cnn_learner(data, models.resnet18, pretrained=False, progress=False, path=tmp_path)
    learn.fit(1, 1e-3)
    session = _session(learn.to_onnx())
    meta = _metadata(session)
    assert meta["labels"]["kind"] == "multi" and meta["classes"] == list(data.classes)
    assert meta["output"]["activation"] == "sigmoid" and meta["preprocess"]["size"] == [32, 40]
    assert meta["preprocess"]["resize_method"] == "squish"
    assert session.get_inputs()[0].shape == ["batch", 3, 32, 40]
    preds, _ = learn.get_preds()
    _same(_onnx_preds(session, learn, ("image",)), preds)


def test_images_of_any_size_need_a_size(tiny, tmp_path):
    from deftly.vision import ImageList, cnn_learner, models

    data = (ImageList.from_folder(tiny).filter_by_folder(include=["train", "valid"]).filter_by_rand(0.05, seed=0)
            .split_by_folder().label_from_folder().transform(None).databunch(bs=8, num_workers=0))
    learn = cnn_learner(data, models.resnet18, pretrained=False, lin_ftrs=[16], progress=False, path=tmp_path)
    with pytest.raises(ConfigError, match=r"pass size=\(h, w\)"):
        learn.to_onnx()
    assert not (tmp_path / "model.onnx").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch deprecates its TorchScript exporter
        file = learn.to_onnx(size=28, dynamo=False)
    session = _session(file)
    assert session.get_inputs()[0].shape == ["batch", 3, 28, 28]
    assert _metadata(session)["preprocess"]["mean"] is None  # the data was not normalised
    preds, _ = learn.get_preds()
    _same(_onnx_preds(session, learn, ("image",)), preds)


# ----------------------------------------------------------------------------------------- tabular

CAT = ["workclass", "education", "marital-status", "occupation", "relationship", "race"]
CONT = ["age", "fnlwgt", "education-num"]


@pytest.fixture(scope="module")
def adult(data_home):
    path = data_home["adult"]
    return path, pd.read_csv(path / "adult.csv").iloc[:1500]


def _tabular(adult, tmp_path, label: str = "salary", cont=CONT, **label_kwargs) -> Learner:
    from deftly.tabular import Categorify, FillMissing, Normalize, TabularList, tabular_learner

    path, df = adult
    set_seed(0)
    data = (TabularList.from_df(df, path=tmp_path, cat_names=CAT, cont_names=list(cont),
                                procs=[FillMissing, Categorify, Normalize])
            .split_by_idx(range(1200, 1500)).label_from_df(cols=label, **label_kwargs).databunch(bs=64))
    learn = tabular_learner(data, layers=[40, 20], ps=[0.01, 0.1], emb_drop=0.05, progress=False)
    learn.fit_one_cycle(1, 1e-2)
    return learn


@pytest.fixture(scope="module")
def tab_learn(adult, tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _tabular(adult, tmp_path_factory.mktemp("tab"))
    finally:
        torch.set_num_threads(threads)


def test_tabular_classifier_matches_get_preds_and_predict(tab_learn, adult, tmp_path):
    from deftly.export.onnx import read_metadata
    from deftly.tabular.processor import TabularProcessor

    file = tab_learn.to_onnx(tmp_path / "adult.onnx")
    assert file == tmp_path / "adult.onnx"
    session = _session(file)
    processor = tab_learn.data.processor
    assert [(i.name, i.shape, i.type) for i in session.get_inputs()] == [
        ("cats", ["batch", len(processor.cat_names)], "tensor(int64)"),
        ("conts", ["batch", len(processor.cont_names)], "tensor(float)")]
    meta = read_metadata(file)
    assert meta == _metadata(session)
    assert meta["application"] == "tabular" and meta["classes"] == ["<50k", ">=50k"]
    assert meta["cat_names"] == processor.cat_names and meta["cont_names"] == CONT
    preds, _ = tab_learn.get_preds()
    _same(_onnx_preds(session, tab_learn, ("cats", "conts")), preds)

    # rows of a DataFrame, processed from the metadata alone, against learn.predict
    _, df = adult
    rows = df.iloc[[3, 1250, 1400, 7]]
    cats, conts = TabularProcessor.from_state(meta["processor"]).transform(rows)
    out = session.run(None, {"cats": cats, "conts": conts})[0]
    _same(out, torch.stack([tab_learn.predict(rows.iloc[i])[2] for i in range(len(rows))]))


def test_tabular_regression_and_no_continuous_columns(adult, tmp_path):
    from deftly.tabular import FloatList

    learn = _tabular(adult, tmp_path, label="age", cont=["fnlwgt"], label_cls=FloatList, log=True)
    session = _session(learn.to_onnx())
    meta = _metadata(session)
    assert meta["output"] == {"name": "preds", "dtype": "float32", "shape": ["batch", 1], "activation": "none"}
    assert meta["labels"] == {"kind": "float", "log": True}
    preds, _ = learn.get_preds()
    _same(_onnx_preds(session, learn, ("cats", "conts")), preds)

    learn = _tabular(adult, tmp_path, cont=[])  # the model ignores `conts`: the file still takes it
    session = _session(learn.to_onnx("no_conts.onnx"))
    assert [(i.name, i.shape) for i in session.get_inputs()] == [("cats", ["batch", len(CAT)]), ("conts", ["batch", 0])]
    preds, _ = learn.get_preds()
    _same(_onnx_preds(session, learn, ("cats", "conts")), preds)


def test_a_loaded_export_converts_to_the_same_onnx_outputs(tab_learn, tmp_path):
    from deftly.export import load_learner

    first = _session(tab_learn.to_onnx(tmp_path / "direct.onnx"))
    tab_learn.export(tmp_path / "export.pkl")
    loaded = load_learner(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch deprecates its TorchScript exporter
        second = _session(loaded.to_onnx("loaded.onnx", dynamo=False))
    (cats, conts), _ = next(iter(tab_learn.data.valid_dl))
    feed = {"cats": cats.numpy(), "conts": conts.numpy()}
    a, b = first.run(None, feed)[0], second.run(None, feed)[0]
    assert np.abs(a - b).max() <= ATOL
    assert _metadata(first)["processor"] == _metadata(second)["processor"]


# ------------------------------------------------------------------------------------------ errors


def test_text_and_collab_learners_are_refused(imdb, tmp_path):
    from deftly.collab import CollabDataBunch, collab_learner
    from deftly.text import AWD_LSTM, TextList, text_classifier_learner
    from deftly.text.models import awd_lstm_clas_config

    df = pd.read_csv(imdb / "texts.csv").iloc[:40]
    data = (TextList.from_df(df, path=tmp_path, cols="text").split_by_rand_pct(0.25, seed=0).label_from_df(cols=0)
            .databunch(bs=8))
    text = text_classifier_learner(data, AWD_LSTM, config=dict(awd_lstm_clas_config, emb_sz=8, n_hid=16, n_layers=1),
                                   pretrained=False, progress=False)
    rng = np.random.default_rng(0)
    ratings = pd.DataFrame({"user": rng.integers(0, 10, 80), "item": rng.integers(0, 12, 80),
                            "rating": rng.uniform(1, 5, 80)})
    collab = collab_learner(CollabDataBunch.from_df(ratings, seed=0, path=tmp_path), n_factors=4, progress=False)
    for learn, kind in ((text, "text"), (collab, "collab")):
        with pytest.raises(ExportError, match=rf"image and tabular learners .*this is a {kind} learner.*learn.export"):
            learn.to_onnx(tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_missing_onnx_names_the_extra(tab_learn, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    with pytest.raises(ExportError, match=r"pip install deftly\[onnx\]"):
        tab_learn.to_onnx(tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


class _DataDependent(nn.Module):
    """A model whose forward branches on its values: torch.export cannot trace it."""

    def __init__(self, n_out: int = 2):
        super().__init__()
        self.lin = nn.Linear(len(CONT), n_out)

    def forward(self, x_cat: torch.Tensor, x_cont: torch.Tensor) -> torch.Tensor:
        out = self.lin(x_cont)
        if out.sum() > 0:
            return out
        return -out


class _Noisy(_DataDependent):
    """A model whose eval outputs are random: it exports, but the file cannot match torch."""

    def forward(self, x_cat: torch.Tensor, x_cont: torch.Tensor) -> torch.Tensor:
        out = self.lin(x_cont)
        return out + 10 * torch.rand_like(out)


def test_a_failed_export_leaves_the_previous_file_intact(tab_learn, tmp_path):
    file = tab_learn.to_onnx(tmp_path / "model.onnx")
    before = file.read_bytes()
    bad = Learner(tab_learn.data, _DataDependent(), loss_func=tab_learn.loss_func, path=tmp_path)
    with pytest.raises(ExportError, match=r"(?s)could not export _DataDependent to ONNX.*data-dependent.*dynamo=False"):
        bad.to_onnx("model.onnx")
    noisy = Learner(tab_learn.data, _Noisy(), loss_func=tab_learn.loss_func, path=tmp_path)
    with pytest.raises(ExportError, match="outputs differ from torch's"):
        noisy.to_onnx("model.onnx")
    assert file.read_bytes() == before
    _no_temp_files(tmp_path)


def test_an_interrupted_write_leaves_the_previous_file_intact(tab_learn, tmp_path, monkeypatch):
    from deftly.export import onnx as onnx_export

    file = tab_learn.to_onnx(tmp_path / "model.onnx")
    before = file.read_bytes()

    def half_written(tmp: Path, data: bytes) -> None:
        tmp.write_bytes(data[: len(data) // 2])
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(onnx_export, "_write_file", half_written)
    with pytest.raises(OSError, match="simulated"):
        tab_learn.to_onnx(tmp_path / "model.onnx")
    assert file.read_bytes() == before
    _no_temp_files(tmp_path)
