"""Learner.predict for serving: one item takes a direct path (no DataLoader), a list of items is one
batch giving what one-by-one calls give (vision, tabular rows, collab pairs, text classifier), and
set_inference_threads sets torch's thread counts for a server process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from deftly.core import set_inference_threads, set_seed, usable_cores
from deftly.core.errors import ConfigError, DataError
from deftly.export import load_learner

pytestmark = pytest.mark.usefixtures("one_thread")


def _same(single: tuple, batched: tuple, atol: float = 1e-5) -> None:
    """One-by-one and batched predictions agree: label, decoded prediction, probabilities (to float noise)."""
    assert str(single[0]) == str(batched[0])
    assert torch.equal(torch.as_tensor(single[1]), torch.as_tensor(batched[1]))
    assert single[2].shape == batched[2].shape
    assert torch.allclose(single[2], batched[2], atol=atol, rtol=0), (single[2], batched[2])


def _check_list(learn, items: list, **kwargs) -> list:
    singles = [learn.predict(item, **kwargs) for item in items]
    batched = learn.predict(list(items), **kwargs)
    assert isinstance(batched, list) and len(batched) == len(items)
    for s, b in zip(singles, batched):
        _same(s, b)
    return batched


@pytest.fixture(scope="module")
def vision_learn(tiny):
    from deftly.vision import ImageList, cnn_learner, imagenet_stats, models

    set_seed(0)
    data = (ImageList.from_folder(tiny).filter_by_folder(include=["train", "valid"]).filter_by_rand(0.05, seed=0)
            .split_by_folder().label_from_folder().transform(None, size=32).databunch(bs=8, num_workers=0)
            .normalize(imagenet_stats))
    return cnn_learner(data, models.resnet18, pretrained=False, lin_ftrs=[16], progress=False)


def test_vision_single_item_takes_no_dataloader(vision_learn, monkeypatch):
    from deftly.vision import open_image

    learn = vision_learn
    file = learn.data.valid_ds.x.items[0]
    expected = learn.predict(file)

    def refuse(self):
        raise AssertionError("predict iterated a DataLoader")

    monkeypatch.setattr(DataLoader, "__iter__", refuse)
    label, idx, probs = learn.predict(file)
    assert str(label) == str(expected[0]) and torch.equal(idx, expected[1]) and torch.equal(probs, expected[2])
    assert probs.shape == (2,) and abs(float(probs.sum()) - 1) < 1e-5
    assert learn.predict(open_image(file))[2].shape == (2,)
    _check_list(learn, list(learn.data.valid_ds.x.items[:3]))


def test_vision_list_is_one_batch(vision_learn):
    from deftly.vision import open_image

    learn = vision_learn
    files = list(learn.data.valid_ds.x.items[:5]) + list(learn.data.train_ds.x.items[:2])
    items = [*files, open_image(files[0]), str(files[1]), Path(files[2]).read_bytes()]  # kinds may be mixed
    calls = []
    hook = learn.model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        batched = _check_list(learn, items)
        calls.clear()
        learn.predict(items)
    finally:
        hook.remove()
    assert calls == [len(items)]  # one forward for the whole list
    assert all(isinstance(p[2], torch.Tensor) and p[2].shape == (2,) for p in batched)
    assert learn.predict([]) == []
    with pytest.raises(DataError, match="cannot make an image"):
        learn.predict([files[0], 3.5])


def test_predict_leaves_eval_mode_and_ordinary_tensors(vision_learn):
    learn = vision_learn
    file = learn.data.valid_ds.x.items[0]
    expected = learn.predict(file)[2]
    learn.model.train()
    assert torch.allclose(learn.predict(file)[2], expected, atol=1e-6)  # eval mode: dropout and BN off
    assert not any(m.training for m in learn.model.modules())
    learn.model[1].train()  # one part in training mode is noticed too
    assert torch.allclose(learn.predict(file)[2], expected, atol=1e-6)
    probs = learn.predict(file)[2]
    assert not probs.is_inference() and not probs.requires_grad
    probs.mul_(2)  # the caller's to change
    for _, _, p in learn.predict([file, file]):
        assert not p.is_inference()
    learn.fit(1, 1e-3)  # training still works after predictions


def test_exported_vision_list_and_threads_untouched(vision_learn, tmp_path):
    learn = vision_learn
    learn.export(tmp_path / "export.pkl")
    before = (torch.get_num_threads(), torch.get_num_interop_threads())
    loaded = load_learner(tmp_path)
    assert (torch.get_num_threads(), torch.get_num_interop_threads()) == before
    files = list(learn.data.valid_ds.x.items[:4])
    for mine, theirs in zip(learn.predict(files), _check_list(loaded, files)):
        _same(mine, theirs, atol=1e-6)


# ----------------------------------------------------------------------------------------- tabular

CAT = ["workclass", "education", "marital-status", "occupation"]
CONT = ["age", "fnlwgt", "education-num"]


@pytest.fixture(scope="module")
def tabular(data_home):
    from deftly.tabular import Categorify, FillMissing, Normalize, TabularList, tabular_learner

    path = data_home["adult"]
    df = pd.read_csv(path / "adult.csv").iloc[:600]
    set_seed(0)
    procs = [FillMissing, Categorify, Normalize]
    data = (TabularList.from_df(df, path=path, cat_names=CAT, cont_names=CONT, procs=procs)
            .split_by_idx(range(500, 600)).label_from_df(cols="salary").databunch(bs=64))
    return tabular_learner(data, layers=[16], progress=False), df


def test_tabular_rows(tabular):
    learn, df = tabular
    rows = [df.iloc[i] for i in (0, 3, 550)]
    rows.append({**df.iloc[7].to_dict(), "education-num": np.nan, "occupation": "never seen"})  # filled, #na#
    rows.append(df.iloc[[9]])  # a one-row DataFrame
    _check_list(learn, rows)
    single = learn.predict(df.iloc[[9]])
    assert isinstance(single, tuple) and single[2].shape == (2,)  # a one-row DataFrame is still one item
    with pytest.raises(DataError, match="row 1 of the list: the row has no value"):
        learn.predict([df.iloc[0], {"age": 30}])


# ------------------------------------------------------------------------------------------ collab


@pytest.fixture(scope="module")
def collab():
    from deftly.collab import CollabDataBunch, collab_learner

    rng = np.random.default_rng(0)
    ratings = pd.DataFrame({"userId": rng.integers(1, 30, 600), "movieId": rng.integers(100, 140, 600),
                            "rating": rng.integers(1, 6, 600).astype(np.float32)})
    set_seed(0)
    data = CollabDataBunch.from_df(ratings, seed=42, bs=64)
    return collab_learner(data, n_factors=4, y_range=(0, 5.5), progress=False), ratings


def test_collab_pairs_and_rows(collab):
    learn, ratings = collab
    u, m = int(ratings.userId[0]), int(ratings.movieId[1])
    items = [ratings.iloc[0], (u, m), ratings.iloc[5].to_dict(), [int(ratings.userId[9]), int(ratings.movieId[9])]]
    _check_list(learn, items)
    single = learn.predict([u, m])  # a list of two ids is still one (user, item) pair
    assert isinstance(single, tuple) and torch.allclose(single[2], learn.predict((u, m))[2])
    assert len(learn.predict([(u, m)])) == 1
    with pytest.raises(DataError, match="not among"):
        learn.predict([(u, m), (10_000, m)])


# -------------------------------------------------------------------------------------------- text


@pytest.fixture(scope="module")
def text_clas(imdb):
    from deftly.text import AWD_LSTM, TextList, text_classifier_learner
    from deftly.text.models import awd_lstm_clas_config

    set_seed(0)
    data = (TextList.from_csv(imdb, "texts.csv", cols="text").split_from_df(col=2).label_from_df(cols=0)
            .databunch(bs=32))
    config = dict(awd_lstm_clas_config, emb_sz=16, n_hid=24, n_layers=2)
    return text_classifier_learner(data, AWD_LSTM, config=config, bptt=8, progress=False)


def test_text_classifier_texts(text_clas):
    texts = ["I love this DRESS, it fits perfectly!!!", "cheap",
             "the fabric is cheap and it ripped after one wash, and the seams came apart on the second day",
             "Runs small. Ordered an xs; returned it"]
    _check_list(text_clas, texts)
    with pytest.raises(DataError, match="takes a text"):
        text_clas.predict(["fine", 3])


def test_backwards_classifier_predicts_what_get_preds_gives(imdb):
    """A backwards model reads each text reversed in training batches; predict must too."""
    from deftly.text import AWD_LSTM, TextList, text_classifier_learner
    from deftly.text.models import awd_lstm_clas_config

    set_seed(0)
    data = (TextList.from_csv(imdb, "texts.csv", cols="text").split_from_df(col=2).label_from_df(cols=0)
            .databunch(bs=32, backwards=True))
    config = dict(awd_lstm_clas_config, emb_sz=16, n_hid=24, n_layers=2)
    learn = text_classifier_learner(data, AWD_LSTM, config=config, bptt=8, progress=False)
    preds, _ = learn.get_preds()
    texts = [data.valid_ds.x.text_of(i) for i in range(4)]
    for i, text in enumerate(texts):
        assert torch.allclose(learn.predict(text)[2], preds[i], atol=1e-5)
    for i, (_, _, probs) in enumerate(learn.predict(texts)):
        assert torch.allclose(probs, preds[i], atol=1e-5)


# ----------------------------------------------------------------------------------------- threads


def test_set_inference_threads_in_process():
    threads, interop = torch.get_num_threads(), torch.get_num_interop_threads()
    try:
        assert set_inference_threads(1, interop=None) == (1, interop)
        assert set_inference_threads(2, interop=None)[0] == 2
        assert set_inference_threads(processes=usable_cores() * 4, interop=None)[0] == 1  # never below 1
        with pytest.raises(ConfigError):
            set_inference_threads(0)
        with pytest.raises(ConfigError):
            set_inference_threads(processes=0)
    finally:
        torch.set_num_threads(threads)
    assert 1 <= usable_cores() <= (os.cpu_count() or 1)


def test_set_inference_threads_in_a_server_process():
    """A fresh process: the defaults (cores / processes, one inter-op thread), then a late inter-op change warns."""
    script = textwrap.dedent("""
        import json, warnings
        import torch
        from deftly.core import set_inference_threads, usable_cores
        first = set_inference_threads()
        second = set_inference_threads(processes=2, interop=1)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            late = set_inference_threads(1, interop=2)
        print(json.dumps({"cores": usable_cores(), "first": first, "second": second, "late": late,
                          "warned": [str(w.message) for w in caught]}))
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent), "DEFTLY_OFFLINE": "1"}
    env.pop("OMP_NUM_THREADS", None)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    cores = got["cores"]
    assert got["first"] == [cores, 1]
    assert got["second"] == [max(1, cores // 2), 1]
    assert got["late"] == [1, 1] and "cannot change them now" in got["warned"][0]
