"""collab_learner on the real MovieLens sample: v1's models and init, training, predict, get_preds,
show_results, and lesson 5's bias / weight / pca."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from movielens_home import movielens_home
from torch import nn

from deftly.collab import (CollabDataBunch, CollabLearner, EmbeddingDotBias, EmbeddingNN, FactorTensor,
                           collab_learner, pca)
from deftly.core import set_seed
from deftly.core.errors import ConfigError, DataError
from deftly.data.databunch import DatasetType


@pytest.fixture(scope="module")
def ratings(tmp_path_factory):
    return pd.read_csv(movielens_home(tmp_path_factory)["ml_sample"] / "ratings.csv")


@pytest.fixture(scope="module")
def data(ratings):
    return CollabDataBunch.from_df(ratings, seed=42)


@pytest.fixture(scope="module")
def learn(data):
    """The lesson 4 model after lesson 4's training (3 epochs of one cycle at 5e-3), on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        set_seed(42)
        learn = collab_learner(data, n_factors=50, y_range=[0, 5.5], progress=False)
        learn.fit_one_cycle(3, 5e-3)
    finally:
        torch.set_num_threads(threads)
    return learn


def test_embedding_dot_bias_is_v1s_formula_and_init():
    set_seed(0)
    m = EmbeddingDotBias(n_factors=8, n_users=500, n_items=400, y_range=(0, 5.5))
    assert [n for n, _ in m.named_children()] == ["u_weight", "i_weight", "u_bias", "i_bias"]
    for emb in m.children():  # v1's trunc_normal_: std 0.01, cut at two std
        assert emb.weight.abs().max() <= 0.02 and 0.007 < emb.weight.std() < 0.011
    with torch.no_grad():
        for emb in m.children():
            emb.weight.normal_()
    users, items = torch.tensor([0, 3, 499]), torch.tensor([1, 1, 399])
    raw = ((m.u_weight.weight[users] * m.i_weight.weight[items]).sum(1) + m.u_bias.weight[users, 0]
           + m.i_bias.weight[items, 0])
    assert torch.allclose(m(users, items), torch.sigmoid(raw) * 5.5)
    m.y_range = None
    assert torch.allclose(m(users, items), raw)
    with pytest.raises(ConfigError, match="y_range must have low < high"):
        EmbeddingDotBias(8, 5, 5, y_range=(5, 1))
    with pytest.raises(ConfigError, match="n_users must be a positive integer"):
        EmbeddingDotBias(8, 0, 5)


def test_embedding_nn_is_v1s_tabular_model_without_continuous_inputs():
    m = EmbeddingNN([(10, 4), (20, 6)], layers=[16, 8], ps=[0.1, 0.2], emb_drop=0.3, y_range=(0, 5))
    kinds = [type(layer).__name__ for layer in m.layers]
    assert kinds == ["Linear", "ReLU", "BatchNorm1d", "Dropout", "Linear", "ReLU", "BatchNorm1d", "Dropout", "Linear"]
    assert m.layers[0].in_features == 10 and m.emb_drop.p == 0.3
    m.eval()
    out = m(torch.tensor([0, 9]), torch.tensor([19, 1]))
    assert out.shape == (2, 1) and ((out > 0) & (out < 5)).all()
    assert all(e.weight.abs().max() <= 0.02 for e in m.embeds)
    with pytest.raises(ConfigError, match="ps must give one dropout per layer"):
        EmbeddingNN([(10, 4), (20, 6)], layers=[16], ps=[0.1, 0.2])


def test_collab_learner_builds_v1s_models(data):
    learn = collab_learner(data, n_factors=40, y_range=[0, 5.5], wd=0.1, progress=False)
    assert isinstance(learn, CollabLearner) and isinstance(learn.model, EmbeddingDotBias)
    assert learn.model.u_weight.weight.shape == (len(data.classes["userId"]), 40)
    assert learn.model.i_bias.weight.shape == (len(data.classes["movieId"]), 1)
    assert learn.wd == 0.1 and type(learn.loss_func).__name__ == "MSELossFlat"
    default = collab_learner(data, progress=False)
    assert default.model.u_weight.embedding_dim == 50  # fastai's default where v1's None crashed
    nn_learn = collab_learner(data, use_nn=True, emb_szs={"userId": 5}, layers=[30], ps=[0.1], emb_drop=0.2,
                              progress=False)
    assert isinstance(nn_learn.model, EmbeddingNN)
    assert [e.embedding_dim for e in nn_learn.model.embeds] == [5, 21]
    assert nn_learn.model.layers[0].out_features == 30
    assert collab_learner(data, use_nn=True, n_factors=12, progress=False).model.layers[0].out_features == 12
    with pytest.raises(ConfigError, match="needs a CollabDataBunch"):
        collab_learner(object())


def test_training_beats_the_mean_rating(learn, data):
    mse = learn.validate()[0]
    mean = float(data.train_ds.y.mean())
    baseline = float(((data.valid_ds.y - mean) ** 2).mean())
    assert mse < 0.85 * baseline, (mse, baseline)
    assert len(learn.recorder.losses) == 3 * len(data.train_dl)


def test_get_preds_and_predict_agree_with_the_model(learn, data, ratings):
    preds, targs = learn.get_preds()
    (users, items), y = data.valid_ds.x, data.valid_ds.y
    with torch.no_grad():
        assert torch.allclose(preds, learn.model.eval()(users, items), atol=1e-6)
    assert torch.equal(targs, y) and preds.shape == (len(data.valid_ds),)
    assert ((preds > 0) & (preds < 5.5)).all()

    row = ratings.iloc[int(data.train_idx[0])]
    item, pred, raw = learn.predict(row)
    u, i = data.codes([row["userId"]], is_item=False), data.codes([row["movieId"]])
    with torch.no_grad():
        expected = float(learn.model(u, i)[0])
    assert math.isclose(float(pred), expected, rel_tol=1e-5) and math.isclose(item.data, expected, rel_tol=1e-5)
    assert math.isclose(float(learn.predict((int(row["userId"]), int(row["movieId"])))[1]), expected, rel_tol=1e-5)
    assert math.isclose(float(learn.predict({"userId": row["userId"], "movieId": row["movieId"]})[1]),
                        expected, rel_tol=1e-5)


def test_predict_names_ids_it_has_never_seen(learn, ratings):
    row = ratings.iloc[0].copy()
    row["userId"] = 100_000
    with pytest.raises(DataError, match=r"1 user id\(s\) not among the 100 users of the training set "
                                        r"\(column 'userId'\): 100000\.0\. An id only in the validation"):
        learn.predict(row)
    with pytest.raises(DataError, match=r"item id\(s\) not among .*: 'Star Wars'"):
        learn.predict((int(ratings["userId"][0]), "Star Wars"))
    with pytest.raises(DataError, match=r"the row has no item column 'movieId'; it has \['userId', 'rating'\]"):
        learn.predict(pd.Series({"userId": 1, "rating": 3.0}))
    with pytest.raises(DataError, match="needs a \\(user, item\\) pair"):
        learn.predict(42)


def test_show_results_prints_targets_and_predictions(learn, data, capsys):
    learn.show_results(rows=3)
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["userId", "movieId", "target", "prediction"] and len(out) == 4
    preds, _ = learn.get_preds()
    assert math.isclose(float(out[1].split()[3]), float(preds[0]), abs_tol=1e-4)
    learn.show_results(ds_type=DatasetType.Train, rows=2)
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_bias_and_weight_read_the_embeddings_by_original_id(learn, data):
    ids = [data.classes["movieId"][5], data.classes["movieId"][1]]
    b = learn.bias(ids)
    assert b.shape == (2,) and torch.equal(b, learn.model.i_bias.weight[[5, 1], 0].detach())
    w = learn.weight(ids)
    assert isinstance(w, FactorTensor) and w.shape == (2, 50)
    assert torch.equal(w.as_subclass(torch.Tensor), learn.model.i_weight.weight[[5, 1]].detach())
    user = data.classes["userId"][3]
    assert torch.equal(learn.bias([user], is_item=False), learn.model.u_bias.weight[[3], 0].detach())
    assert learn.weight(np.array([user]), is_item=False).shape == (1, 50)
    with pytest.raises(DataError, match=r"1 item id\(s\) not among .*: 99999"):
        learn.bias([ids[0], 99999])
    assert not learn.bias([]).numel()


def test_pca_on_weights_without_patching_torch(learn, data):
    ids = data.classes["movieId"][1:]
    w = learn.weight(ids)
    comps = w.pca(3)
    assert type(comps) is torch.Tensor and comps.shape == (100, 3)
    assert not hasattr(torch.Tensor, "pca") and not hasattr(torch.zeros(1), "pca")
    x = w.as_subclass(torch.Tensor)
    x = x - x.mean(0)
    u, _, _ = torch.svd(x.t())  # v1's _pca
    v1 = x @ u[:, :3]
    for k in range(3):  # each component's sign is arbitrary
        assert torch.allclose(comps[:, k].abs(), v1[:, k].abs(), atol=1e-5)
    assert torch.allclose(pca(x, 2), comps[:, :2], atol=1e-5)
    fac0, fac1, fac2 = comps.t()
    assert fac0.var() >= fac1.var() >= fac2.var()
    assert type(w + 1) is torch.Tensor and type(w[0]) is torch.Tensor  # only the weights carry pca
    with pytest.raises(ConfigError, match="k must be between 1 and 50"):
        w.pca(51)


def test_save_and_load_round_trip(learn, data, tmp_path):
    learn.path = tmp_path
    learn.save("dotprod")
    other = collab_learner(data, n_factors=50, y_range=[0, 5.5], progress=False, path=tmp_path)
    other.load("dotprod")
    for a, b in zip(learn.model.state_dict().values(), other.model.state_dict().values()):
        assert torch.equal(a, b)


def test_an_nn_model_has_weights_but_no_bias(data):
    learn = collab_learner(data, use_nn=True, layers=[8], progress=False)
    some = data.classes["movieId"][1:4]
    assert learn.weight(some).shape == (3, 21) and isinstance(learn.weight(some), FactorTensor)
    with pytest.raises(ConfigError, match="reads the i_bias embedding of an EmbeddingDotBias model"):
        learn.bias(some)


def test_nn_model_trains_and_predicts(data, ratings, one_thread):
    set_seed(0)
    learn = collab_learner(data, use_nn=True, layers=[20], ps=[0.1], y_range=(0, 5.5), progress=False)
    learn.fit_one_cycle(1, 1e-2)
    preds, targs = learn.get_preds()
    assert preds.shape == (len(targs), 1)
    row = ratings.iloc[int(data.train_idx[0])]
    assert 0 < float(learn.predict(row)[1]) < 5.5
    assert isinstance(learn.model.layers[-1], nn.Linear)
