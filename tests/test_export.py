"""deftly.export: learn.export() and load_learner for every application (vision single- and
multi-label, tabular, collab, text classifier and language model) on real bundled data, a user's
own architecture by name, hostile files, and an interrupted export."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from deftly.core import set_seed
from deftly.core.errors import ExportError
from deftly.export import FORMAT, FORMAT_VERSION, load_learner, register_arch
from deftly.train.learner import Learner

pytestmark = pytest.mark.usefixtures("one_thread")


def _roundtrip(learn, tmp_path: Path, fname: str = "export.pkl"):
    """Export `learn` into tmp_path and load it back on the CPU; also check the file's layout."""
    file = learn.export(tmp_path / fname)
    assert file == tmp_path / fname
    with zipfile.ZipFile(file) as zf:
        assert sorted(zf.namelist()) == ["manifest.json", "weights.safetensors"]
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["format"] == FORMAT and manifest["format_version"] == FORMAT_VERSION
    threads = torch.get_num_threads()
    loaded = load_learner(tmp_path, fname)
    assert torch.get_num_threads() == threads  # loading leaves thread settings alone
    assert all(p.device.type == "cpu" for p in loaded.model.parameters())
    return loaded, manifest


def _same_predictions(learn, loaded, items, **kwargs) -> None:
    for item in items:
        a, b = learn.predict(item, **kwargs), loaded.predict(item, **kwargs)
        assert str(a[0]) == str(b[0])
        assert torch.equal(torch.as_tensor(a[1]), torch.as_tensor(b[1]))
        assert torch.allclose(a[2], b[2], atol=1e-6, rtol=0), (a[2], b[2])


# ------------------------------------------------------------------------------------------ vision


def test_vision_single_label(tiny, tmp_path):
    from deftly.vision import ImageList, cnn_learner, get_transforms, imagenet_stats, models

    set_seed(0)
    data = (ImageList.from_folder(tiny).filter_by_folder(include=["train", "valid"]).filter_by_rand(0.12, seed=0)
            .split_by_folder().label_from_folder()
            .transform(get_transforms(do_flip=False), size=32).databunch(bs=16, num_workers=0)
            .normalize(imagenet_stats))
    learn = cnn_learner(data, models.resnet18, pretrained=False, lin_ftrs=[32], ps=0.2, progress=False)
    learn.fit(1, 1e-3)
    loaded, manifest = _roundtrip(learn, tmp_path)
    assert manifest["application"] == "vision" and manifest["labels"] == {"kind": "single", "classes": ["3", "7"]}
    assert manifest["arch"]["kwargs"]["arch"] == "resnet18" and manifest["arch"]["kwargs"]["lin_ftrs"] == [32]
    assert manifest["data"]["transforms"]["size"] == 32 and manifest["data"]["normalize"]["mean"] == imagenet_stats[0]
    assert loaded.data.classes == ["3", "7"] and loaded.arch.name == "resnet18" and len(loaded.layer_groups) == 3
    files = list(data.valid_ds.x.items[:4]) + list(data.train_ds.x.items[:2])
    _same_predictions(learn, loaded, files)
    from deftly.vision import open_image
    _same_predictions(learn, loaded, [open_image(files[0])])


def planet_bunch(planet: Path, bs: int):
    """A tenth of the bundled planet sample as a small multi-label DataBunch (seeded split)."""
    from deftly.vision import ImageList, get_transforms

    return (ImageList.from_csv(planet, "labels.csv", folder="train", suffix=".jpg").filter_by_rand(0.1, seed=0)
            .split_by_rand_pct(0.2, seed=0).label_from_df(label_delim=" ")
            .transform(get_transforms(flip_vert=True, max_warp=0.0), size=(32, 40), resize_method="squish")
            .databunch(bs=bs, num_workers=0).normalize())


def test_vision_multi_label(planet, tmp_path):
    from deftly.vision import cnn_learner, models

    set_seed(0)
    data = planet_bunch(planet, bs=16)
    learn = cnn_learner(data, models.resnet18, pretrained=False, progress=False)
    learn.fit(1, 1e-3)
    loaded, manifest = _roundtrip(learn, tmp_path, "planet.export")
    assert manifest["labels"]["kind"] == "multi" and manifest["labels"]["classes"] == list(data.classes)
    assert manifest["loss"]["name"] == "BCEWithLogitsFlat"
    assert manifest["data"]["transforms"]["resize_method"] == "squish"
    files = list(data.valid_ds.x.items[:5])
    _same_predictions(learn, loaded, files, thresh=0.4)


# ----------------------------------------------------------------------------------------- tabular

CAT = ["workclass", "education", "marital-status", "occupation", "relationship", "race"]
CONT = ["age", "fnlwgt", "education-num"]


@pytest.fixture(scope="module")
def adult(data_home):
    path = data_home["adult"]
    return path, pd.read_csv(path / "adult.csv").iloc[:2000]


@pytest.fixture(scope="module")
def tab_learn(adult):
    from deftly.tabular import Categorify, FillMissing, Normalize, TabularList, tabular_learner

    path, df = adult
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        set_seed(0)
        data = (TabularList.from_df(df, path=path, cat_names=CAT, cont_names=CONT,
                                    procs=[FillMissing, Categorify, Normalize])
                .split_by_idx(range(1600, 2000)).label_from_df(cols="salary").databunch(bs=64))
        learn = tabular_learner(data, layers=[40, 20], ps=[0.01, 0.1], emb_drop=0.05, progress=False)
        learn.fit_one_cycle(1, 1e-2)
    finally:
        torch.set_num_threads(threads)
    return learn


def test_tabular(tab_learn, adult, tmp_path):
    _, df = adult
    loaded, manifest = _roundtrip(tab_learn, tmp_path)
    assert manifest["application"] == "tabular" and manifest["learner"] == "TabularLearner"
    assert manifest["data"]["processor"] == tab_learn.data.processor.state()
    assert manifest["arch"]["kwargs"]["layers"] == [40, 20]
    assert type(loaded).__name__ == "TabularLearner" and loaded.data.cat_names == tab_learn.data.cat_names
    rows = [df.iloc[i] for i in (0, 5, 1700, 1999)]
    rows.append({**df.iloc[3].to_dict(), "education-num": np.nan, "occupation": "never seen"})  # filled, #na#
    _same_predictions(tab_learn, loaded, rows)


def test_tabular_regression_loads_in_a_fresh_process(adult, tmp_path):
    """A float target; load_learner in a new interpreter that never saw the learner."""
    from deftly.tabular import FloatList, TabularList, tabular_learner

    path, df = adult
    set_seed(0)
    data = (TabularList.from_df(df, path=path, cat_names=CAT[:3], cont_names=["fnlwgt"])
            .split_by_idx(range(1800, 2000)).label_from_df(cols="age", label_cls=FloatList, log=True)
            .databunch(bs=128))
    learn = tabular_learner(data, layers=[16], y_range=torch.tensor([2.5, 4.7]), progress=False)
    learn.fit(1, 1e-2)
    learn.export(tmp_path / "export.pkl")
    rows = df.iloc[[0, 1900]][CAT[:3] + ["fnlwgt"]]
    rows.to_csv(tmp_path / "rows.csv", index=False)
    script = ("import json, sys, pandas as pd, torch; torch.set_num_threads(1)\n"
              "from deftly.tabular import load_learner\n"
              "learn = load_learner(sys.argv[1])\n"
              "rows = pd.read_csv(sys.argv[1] + '/rows.csv')\n"
              "print(json.dumps([learn.predict(rows.iloc[i])[2].tolist() for i in range(len(rows))]))\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent), "DEFTLY_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    theirs = json.loads(out.stdout.strip().splitlines()[-1])
    rows = pd.read_csv(tmp_path / "rows.csv")
    mine = [learn.predict(rows.iloc[i])[2].tolist() for i in range(len(rows))]
    assert np.allclose(mine, theirs, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------ collab


@pytest.fixture(scope="module")
def ratings(tmp_path_factory):
    from movielens_home import movielens_home

    return pd.read_csv(movielens_home(tmp_path_factory)["ml_sample"] / "ratings.csv")


@pytest.mark.parametrize("use_nn", [False, True])
def test_collab(ratings, tmp_path, use_nn):
    from deftly.collab import CollabDataBunch, collab_learner

    set_seed(0)
    data = CollabDataBunch.from_df(ratings, seed=42, bs=256)
    learn = collab_learner(data, n_factors=8, use_nn=use_nn, layers=[16] if use_nn else None, y_range=(0, 5.5),
                           progress=False)
    learn.fit_one_cycle(1, 5e-3)
    loaded, manifest = _roundtrip(learn, tmp_path)
    assert manifest["application"] == "collab" and manifest["data"]["names"] == ["userId", "movieId", "rating"]
    assert manifest["arch"]["name"] == ("deftly.collab.EmbeddingNN" if use_nn else "deftly.collab.EmbeddingDotBias")
    assert loaded.data.classes == data.classes
    rows = [ratings.iloc[i] for i in (0, 10, 500)] + [(int(ratings.userId[3]), int(ratings.movieId[7]))]
    _same_predictions(learn, loaded, rows)
    if not use_nn:
        movies = data.classes["movieId"][1:6]
        assert torch.allclose(learn.bias(movies), loaded.bias(movies), atol=1e-6)


# -------------------------------------------------------------------------------------------- text


@pytest.fixture(scope="module")
def text_learners(imdb):
    from deftly.text import (AWD_LSTM, TextList, language_model_learner, text_classifier_learner)
    from deftly.text.models import awd_lstm_clas_config, awd_lstm_lm_config

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        data_lm = (TextList.from_csv(imdb, "texts.csv", cols="text").split_by_rand_pct(0.1, seed=1)
                   .label_for_lm().databunch(bs=16, bptt=20))
        lm = language_model_learner(data_lm, AWD_LSTM, config=dict(awd_lstm_lm_config, emb_sz=16, n_hid=32, n_layers=2),
                                    pretrained=False, drop_mult=0.3, progress=False)
        lm.fit(1, 1e-2)
        data_clas = (TextList.from_csv(imdb, "texts.csv", cols="text", vocab=data_lm.vocab).split_from_df(col=2)
                     .label_from_df(cols=0).databunch(bs=32))
        clas = text_classifier_learner(data_clas, AWD_LSTM, config=dict(awd_lstm_clas_config, emb_sz=16, n_hid=32,
                                                                         n_layers=2), bptt=20, progress=False)
        clas.fit(1, 1e-2)
    finally:
        torch.set_num_threads(threads)
    return lm, clas


TEXTS = ["I love this DRESS, it fits perfectly!!!", "the fabric is cheap and it ripped after one wash",
         "Runs small. Ordered an xs; returned it"]


def test_text_classifier(text_learners, tmp_path):
    _, clas = text_learners
    loaded, manifest = _roundtrip(clas, tmp_path)
    assert manifest["learner"] == "RNNLearner" and manifest["labels"]["classes"] == ["negative", "positive"]
    assert manifest["data"]["vocab"] == list(clas.data.vocab.itos)
    assert manifest["data"]["text"]["include_bos"] is True and manifest["data"]["tokenizer"]["tok_func"] == "WordTokenizer"
    assert len(loaded.layer_groups) == len(clas.layer_groups)
    _same_predictions(clas, loaded, TEXTS)


def test_language_model(text_learners, tmp_path):
    lm, _ = text_learners
    loaded, manifest = _roundtrip(lm, tmp_path)
    assert manifest["learner"] == "LanguageLearner" and manifest["labels"] == {"kind": "lm"}
    assert manifest["weights"]["aliases"]  # the decoder's weight is the embedding's (tied), stored once
    assert loaded.model[1].decoder.weight is loaded.model[0].encoder.weight
    for text in TEXTS:
        probs = [learner.pred_batch(batch=learner.data.one_item(text))[0] for learner in (lm, loaded)]
        assert torch.allclose(probs[0], probs[1], atol=1e-6, rtol=0)
        words = []
        for learner in (lm, loaded):
            torch.manual_seed(1)
            words.append(learner.predict(text, n_words=6, temperature=0.8))
        assert words[0] == words[1] and len(words[0].split(" ")) > len(text.split(" "))


# --------------------------------------------------------------------------- your own architecture


@register_arch("test_export.TinyTab")
class TinyTab(nn.Module):
    """A user's tabular model, registered as a class."""

    def __init__(self, n_cats: list[int], n_cont: int, n_out: int, width: int = 8):
        super().__init__()
        self.config = dict(n_cats=n_cats, n_cont=n_cont, n_out=n_out, width=width)
        self.embeds = nn.ModuleList([nn.Embedding(n, 3) for n in n_cats])
        self.lin = nn.Sequential(nn.Linear(3 * len(n_cats) + n_cont, width), nn.ReLU(), nn.Linear(width, n_out))

    def get_config(self) -> dict:
        return dict(self.config)

    def forward(self, x_cat: torch.Tensor, x_cont: torch.Tensor) -> torch.Tensor:
        return self.lin(torch.cat([e(x_cat[:, i]) for i, e in enumerate(self.embeds)] + [x_cont], 1))


@register_arch("test_export.tiny_mlp")
def tiny_mlp(n_cont: int, n_out: int, hidden: int = 6, act: type = nn.Tanh) -> nn.Module:
    """A user's model factory, registered as a function (it ignores the categorical columns)."""
    return _ContOnly(nn.Sequential(nn.Linear(n_cont, hidden), act(), nn.Linear(hidden, n_out)))


class _ContOnly(nn.Module):
    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x_cat: torch.Tensor, x_cont: torch.Tensor) -> torch.Tensor:
        return self.body(x_cont)


def test_registered_architectures(tab_learn, adult, tmp_path):
    _, df = adult
    data = tab_learn.data
    n_cats = [len(data.processor.classes[n]) for n in data.cat_names]
    for model, name in ((TinyTab(n_cats, len(data.cont_names), 2, width=5), "test_export.TinyTab"),
                        (tiny_mlp(len(data.cont_names), n_out=2), "test_export.tiny_mlp")):
        learn = Learner(data, model, progress=False)
        learn.fit(1, 1e-2)
        loaded, manifest = _roundtrip(learn, tmp_path, f"{name}.pkl")
        assert manifest["arch"]["name"] == name and manifest["learner"] == "Learner"
        assert type(loaded.model) is type(model)
        _same_predictions(learn, loaded, [df.iloc[i] for i in (1, 1650)])
    assert json.loads(zipfile.ZipFile(tmp_path / "test_export.TinyTab.pkl").read("manifest.json"))["arch"] == {
        "name": "test_export.TinyTab", "args": [], "kwargs": {"n_cats": n_cats, "n_cont": 3, "n_out": 2, "width": 5}}


def test_models_that_cannot_be_named_are_refused_before_writing(tab_learn, tmp_path):
    learn = Learner(tab_learn.data, _ContOnly(nn.Linear(3, 2)), progress=False)  # not registered
    with pytest.raises(ExportError, match="does not say how it was built.*register_arch"):
        learn.export(tmp_path / "x.pkl")
    with pytest.raises(ExportError, match="not plain data"):
        Learner(tab_learn.data, tiny_mlp(3, 2, act=nn.ReLU), progress=False).export(tmp_path / "x.pkl")
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------------------------ hostile files


@pytest.fixture(scope="module")
def good_export(tab_learn, tmp_path_factory) -> bytes:
    folder = tmp_path_factory.mktemp("good_export")
    return tab_learn.export(folder / "export.pkl").read_bytes()


def _entries(blob: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return buf.getvalue()


def _with_manifest(blob: bytes, **changes) -> bytes:
    entries = _entries(blob)
    manifest = json.loads(entries["manifest.json"])
    manifest.update(changes)
    entries["manifest.json"] = json.dumps(manifest).encode()
    return _zip(entries)


PICKLE = b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01."  # the bytes of a (harmless) pickle of 1


@pytest.mark.parametrize("case, message", [
    ("pickle_entry", r"holds a pickle \('data.pkl'\).*never unpickles"),
    ("pickle_as_manifest", r"holds a pickle \('manifest.json'\)"),
    ("torch_save_zip", r"holds a pickle \('archive/data.pkl'\)"),
    ("dotdot", r"entry name '../manifest.json' is an absolute path or leaves the archive"),
    ("absolute", r"entry name '/etc/passwd' is an absolute path"),
    ("truncated", r"truncated or damaged"),
    ("newer", r"written by a newer deftly .*format version 99.*upgrade deftly"),
    ("unknown_arch", r"unknown architecture 'someone_elses_net'.*register_arch"),
    ("raw_pickle", r"is not a deftly export: it is a Python pickle.*expected a deftly export"),
    ("safetensors", r"it is a safetensors weights file \(what learn.save writes\)"),
    ("image", r"it is an image; expected a deftly export"),
    ("other_zip", r"its entries are \['notes.txt'\]; expected exactly"),
    ("other_format", r"format is 'something.else', expected 'deftly.learner'"),
    ("bad_weights", r"damaged: the weights do not match the SHA-256"),
    ("empty", r"it is an empty file"),
])
def test_hostile_and_wrong_files_are_clear_errors(good_export, tab_learn, tmp_path, case, message):
    entries = _entries(good_export)
    if case == "pickle_entry":
        blob = _zip({**entries, "data.pkl": PICKLE})
    elif case == "pickle_as_manifest":
        blob = _zip({**entries, "manifest.json": PICKLE})
    elif case == "torch_save_zip":
        blob = _zip({"archive/data.pkl": PICKLE, "archive/version": b"3\n"})
    elif case == "dotdot":
        blob = _zip({"../manifest.json": entries["manifest.json"], "weights.safetensors": entries["weights.safetensors"]})
    elif case == "absolute":
        blob = _zip({**entries, "/etc/passwd": b"root:x:0:0"})
    elif case == "truncated":
        blob = good_export[: len(good_export) * 2 // 3]
    elif case == "newer":
        blob = _with_manifest(good_export, format_version=99, deftly_version="9.0.0")
    elif case == "unknown_arch":
        blob = _with_manifest(good_export, arch={"name": "someone_elses_net", "args": [], "kwargs": {}})
    elif case == "raw_pickle":
        blob = PICKLE
    elif case == "safetensors":
        blob = tab_learn.save(tmp_path / "weights.safetensors").read_bytes()
    elif case == "image":
        blob = b"\x89PNG\r\n\x1a\n" + bytes(64)
    elif case == "other_zip":
        blob = _zip({"notes.txt": b"hello"})
    elif case == "other_format":
        blob = _with_manifest(good_export, format="something.else")
    elif case == "bad_weights":
        w = bytearray(entries["weights.safetensors"])
        w[-1] ^= 0xFF
        blob = _zip({**entries, "weights.safetensors": bytes(w)})
    else:
        blob = b""
    (tmp_path / "export.pkl").write_bytes(blob)
    with pytest.raises(ExportError, match=message):
        load_learner(tmp_path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ExportError, match="no exported learner at"):
        load_learner(tmp_path, "nothing.pkl")
    (tmp_path / "export.pkl").mkdir()
    with pytest.raises(ExportError, match="is a folder"):
        load_learner(tmp_path)


# ------------------------------------------------------------------------------- interrupted export


def test_interrupted_export_leaves_the_previous_file_intact(tab_learn, tmp_path, monkeypatch):
    from deftly.export import archive

    file = tab_learn.export(tmp_path / "export.pkl")
    before = file.read_bytes()

    def half_written(zf, tensors):
        with zf.open(zipfile.ZipInfo(archive.WEIGHTS), "w") as f:
            f.write(b"\0" * 1000)
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(archive, "write_weights", half_written)
    with pytest.raises(OSError, match="simulated"):
        tab_learn.export(tmp_path / "export.pkl")
    assert file.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.pkl"]  # no temporary file left behind
    monkeypatch.undo()
    assert load_learner(tmp_path).predict({c: 0 for c in CAT + CONT})[2].shape == (2,)


def test_export_with_destroy_releases_the_learner(tab_learn, tmp_path):
    learn = Learner(tab_learn.data, tiny_mlp(3, 2), progress=False)
    file = learn.export(tmp_path / "export.pkl", destroy=True)
    assert learn.model is None and learn.data is None and learn.opt is None
    assert load_learner(tmp_path).predict({c: 1 for c in CAT + CONT})[2].shape == (2,)
    assert file.is_file()


def test_course_namespaces_give_load_learner():
    import deftly.collab
    import deftly.tabular
    import deftly.text
    import deftly.vision

    for mod in (deftly.vision, deftly.tabular, deftly.collab, deftly.text):
        assert mod.load_learner is load_learner and "load_learner" in mod.__all__
