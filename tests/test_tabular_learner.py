"""tabular_learner / TabularModel on real data: Adult classification (lesson 4) and a Rossmann-style
log-target regression on Chicago ridership (lesson 6); predict, get_preds, show_results."""
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from deftly.core.errors import ConfigError, DataError
from deftly.data import Category, DataBunch, FloatList
from deftly.data.databunch import DatasetType
from deftly.tabular import (
    Categorify, FillMissing, Normalize, TabularList, TabularModel, accuracy, add_datepart, exp_rmspe, set_seed,
    tabular_learner,
)

DEP = "salary"
CAT = ["workclass", "education", "marital-status", "occupation", "relationship", "race"]
CONT = ["age", "fnlwgt", "education-num"]
PROCS = [FillMissing, Categorify, Normalize]


@pytest.fixture(scope="module")
def adult_data(data_home):
    """6,000 rows of the bundled adult.csv; rows 5,000-5,999 validate; a test set of 100 rows."""
    path = data_home["adult"]
    df = pd.read_csv(path / "adult.csv").iloc[:6000]
    data = (TabularList.from_df(df, path=path, cat_names=CAT, cont_names=CONT, procs=PROCS)
            .split_by_idx(range(5000, 6000)).label_from_df(cols=DEP)
            .add_test(TabularList.from_df(df.iloc[:100], cat_names=CAT, cont_names=CONT))
            .databunch(bs=64))
    return df, data


@pytest.fixture(scope="module")
def trained(adult_data):
    df, data = adult_data
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    set_seed(0)
    learn = tabular_learner(data, layers=[200, 100], metrics=accuracy, progress=False)
    learn.fit_one_cycle(2, 1e-2)
    torch.set_num_threads(threads)
    return df, learn


def test_model_is_v1s_tabular_model(adult_data):
    _, data = adult_data
    learn = tabular_learner(data, layers=[1000, 500], ps=[0.001, 0.01], emb_drop=0.04, y_range=[0, 2])
    m = learn.model
    assert isinstance(m, TabularModel)
    assert [(e.num_embeddings, e.embedding_dim) for e in m.embeds] == data.get_emb_szs()
    assert m.emb_drop.p == 0.04 and m.bn_cont.num_features == 3
    n_in = sum(w for _, w in data.get_emb_szs()) + 3
    kinds = [(type(l).__name__, getattr(l, "in_features", getattr(l, "num_features", getattr(l, "p", None))))
             for l in m.layers]
    assert kinds == [("Linear", n_in), ("ReLU", None), ("BatchNorm1d", 1000), ("Dropout", 0.001),
                     ("Linear", 1000), ("ReLU", None), ("BatchNorm1d", 500), ("Dropout", 0.01), ("Linear", 500)]
    assert m.layers[-1].out_features == 2
    x_cat, x_cont = torch.zeros(4, 7, dtype=torch.long), torch.randn(4, 3)
    m.eval()
    out = m(x_cat, x_cont)
    assert out.shape == (4, 2) and ((out > 0) & (out < 2)).all()  # scaled sigmoid of y_range
    assert isinstance(learn.loss_func, nn.Module) or callable(learn.loss_func)


def test_model_options():
    m = TabularModel([(5, 3)], 0, 1, [8], use_bn=False, bn_final=True)
    assert not any(isinstance(l, nn.BatchNorm1d) for l in m.layers[:-1]) and isinstance(m.layers[-1], nn.BatchNorm1d)
    m.eval()
    assert m(torch.tensor([[1], [4]]), torch.zeros(2, 0)).shape == (2, 1)
    only_cont = TabularModel([], 2, 3, [4], ps=0.5)
    assert only_cont(torch.zeros(2, 0, dtype=torch.long), torch.randn(2, 2)).shape == (2, 3)
    with pytest.raises(ConfigError, match="3 dropout values for 2 hidden layers"):
        TabularModel([(5, 3)], 1, 1, [8, 8], ps=[0.1, 0.2, 0.3])


def test_learner_factory_errors(adult_data):
    _, data = adult_data
    with pytest.raises(ConfigError, match=r"emb_szs names \['wrkclass'\].*'workclass'"):
        tabular_learner(data, [10], emb_szs={"wrkclass": 4})
    with pytest.raises(ConfigError, match="needs a TabularDataBunch"):
        tabular_learner(DataBunch(data.train_dl.dl, None), [10])
    learn = tabular_learner(data, [10], emb_szs={"education": 12})
    assert learn.model.embeds[1].embedding_dim == 12


def test_fit_beats_the_majority_class(trained):
    df, learn = trained
    majority = (df[DEP].iloc[5000:] == "<50k").mean()
    acc = learn.recorder.last_values["accuracy"] if hasattr(learn.recorder, "last_values") else learn.validate()[1]
    assert float(acc) > majority + 0.03, (acc, majority)
    loss, acc2 = learn.validate()
    assert loss < 0.45 and float(acc2) == pytest.approx(float(acc), abs=1e-6)


def test_predict_get_preds_and_unseen_categories(trained):
    df, learn = trained
    row = df.iloc[5003]
    category, idx, probs = learn.predict(row)
    assert isinstance(category, Category) and str(category) in ("<50k", ">=50k")
    assert int(idx) == int(probs.argmax()) and str(category) == learn.data.classes[int(idx)]
    assert probs.shape == (2,) and float(probs.sum()) == pytest.approx(1.0, abs=1e-5)
    preds, targs = learn.get_preds()
    assert preds.shape == (1000, 2) and targs.shape == (1000,)
    torch.testing.assert_close(preds[3], probs, rtol=1e-4, atol=1e-5)  # one row = the same row in a batch
    assert learn.predict(row.to_dict())[1] == idx
    # v1: a category never seen in training is #na#, exactly like a missing value
    unseen, missing = row.copy(), row.copy()
    unseen["occupation"], missing["occupation"] = "Astronaut", np.nan
    torch.testing.assert_close(learn.predict(unseen)[2], learn.predict(missing)[2])
    with pytest.raises(DataError, match=r"no value for column\(s\) \['education'\]"):
        learn.predict(row.drop("education"))
    test_preds, _ = learn.get_preds(DatasetType.Test)
    assert test_preds.shape == (100, 2)


def test_show_results_table(trained, capsys):
    _, learn = trained
    df = learn.show_results(rows=4, return_df=True)
    assert len(df) == 4 and list(df.columns[-2:]) == ["target", "prediction"]
    assert set(df["prediction"]) <= {"<50k", ">=50k"}
    learn.show_results(rows=2)
    assert "prediction" in capsys.readouterr().out


@pytest.fixture(scope="module")
def ridership(data_home):
    """A Rossmann-style table: 4 stations' daily entries (days with >= 100 rides: Rossmann drops
    closed days) joined to the day's weather, dates expanded with add_datepart."""
    path = data_home["chicago"]
    rides, weather = pd.read_csv(path / "ridership.csv"), pd.read_csv(path / "weather.csv")
    stations = sorted(rides["station"].unique())[:4]
    df = rides[rides["station"].isin(stations) & (rides["rides"] >= 100)].merge(weather, on="date")
    df = df[df["date"] >= "2010-01-01"].sort_values(["date", "station"]).reset_index(drop=True)
    add_datepart(df, "date", drop=False)
    return df


def test_log_target_regression_with_exp_rmspe(ridership, one_thread):
    df = ridership
    cat_vars = ["station", "Dayofweek", "Month", "Is_month_end", "Cubs_Home"]
    cont_vars = ["temp", "percip", "humidity", "Elapsed"]
    cut = int(len(df) * 0.9)
    data = (TabularList.from_df(df, cat_names=cat_vars, cont_names=cont_vars, procs=PROCS)
            .split_by_idx(range(cut, len(df)))
            .label_from_df(cols="rides", label_cls=FloatList, log=True)
            .databunch(bs=128))
    max_log_y = np.log(df["rides"].max() * 1.2)
    set_seed(1)
    learn = tabular_learner(data, layers=[100, 50], ps=[0.001, 0.01], emb_drop=0.04,
                            y_range=torch.tensor([0, max_log_y]), metrics=exp_rmspe, progress=False)
    learn.fit_one_cycle(3, 3e-2, wd=0.2)
    valid_rmspe = learn.validate()[1]
    # a constant guess (the training median, best for RMSPE-ish errors) is far worse
    y = df["rides"].to_numpy(dtype=float)
    guess = np.median(y[:cut])
    baseline = np.sqrt(np.mean(((y[cut:] - guess) / y[cut:]) ** 2))
    assert valid_rmspe < 0.6 * baseline, (valid_rmspe, baseline)
    _, value, _ = learn.predict(df.iloc[cut + 2])
    assert value.shape == (1,) and 0 < float(value) < max_log_y  # log space, inside y_range
    shown = learn.show_results(rows=3, return_df=True)
    assert not shown["prediction"].str.startswith("[").any()  # a number, like the target


def test_exp_rmspe_formula():
    pred, targ = torch.log(torch.tensor([90.0, 110.0, 200.0])), torch.log(torch.tensor([100.0, 100.0, 250.0]))
    expected = np.sqrt(np.mean([0.1 ** 2, 0.1 ** 2, 0.2 ** 2]))
    assert float(exp_rmspe(pred, targ)) == pytest.approx(expected, rel=1e-5)
