"""TabularList / TabularDataBunch on the bundled UCI Adult sample: the lesson 4 data block chain,
tensor-slice batches, test sets processed with the training processors, and clear errors."""
import numpy as np
import pandas as pd
import pytest
import torch

from deftly.core.errors import ConfigError, DataError
from deftly.data import CategoryList, EmptyLabelList, FloatList
from deftly.data.databunch import DatasetType
from deftly.tabular import Categorify, FillMissing, Normalize, TabularDataBunch, TabularList

DEP = "salary"
CAT = ["workclass", "education", "marital-status", "occupation", "relationship", "race"]
CONT = ["age", "fnlwgt", "education-num"]
PROCS = [FillMissing, Categorify, Normalize]


@pytest.fixture(scope="module")
def adult(data_home):
    """(path, first 3,000 rows of the bundled adult.csv)."""
    path = data_home["adult"]
    return path, pd.read_csv(path / "adult.csv").iloc[:3000]


@pytest.fixture(scope="module")
def data(adult):
    """Lesson 4's chain: validation rows 800-999, a test set given with cat_names only, label=0."""
    path, df = adult
    test = TabularList.from_df(df.iloc[800:1000].copy(), path=path, cat_names=CAT)
    return (TabularList.from_df(df, path=path, cat_names=CAT, cont_names=CONT, procs=PROCS)
            .split_by_idx(list(range(800, 1000)))
            .label_from_df(cols=DEP)
            .add_test(test, label=0)
            .databunch(bs=64))


def test_lesson4_chain(data, adult):
    path, df = adult
    assert isinstance(data, TabularDataBunch)
    assert (len(data.train_ds), len(data.valid_ds), len(data.test_ds)) == (2800, 200, 200)
    assert data.classes == ["<50k", ">=50k"] and data.c == 2
    assert data.cat_names == CAT + ["education-num_na"] and data.cont_names == CONT
    assert data.train_ds.cont_names == CONT  # v1's data.train_ds.cont_names
    assert data.path == path
    n_train = df.drop(index=range(800, 1000))
    sizes = [n_train[c].nunique() + 1 for c in CAT] + [3]  # + #na#; education-num_na: #na#, False, True
    assert data.get_emb_szs() == [(n, min(600, round(1.6 * n ** 0.56))) for n in sizes]
    assert data.get_emb_szs({"workclass": 11})[0] == (sizes[0], 11)


def test_batches_are_tensor_slices(data):
    (x_cat, x_cont), y = data.one_batch()
    assert x_cat.dtype == torch.int64 and x_cat.shape == (64, 7)
    assert x_cont.dtype == torch.float32 and x_cont.shape == (64, 3)
    assert y.dtype == torch.int64 and y.shape == (64,)
    ds = data.train_dl.dl.dataset  # TensorBatches: one index tensor per batch, no collation
    (cats, conts), ys = ds.x, ds.y
    assert cats.shape == (2800, 7) and len(data.train_dl) == 2800 // 64
    idx = torch.tensor([5, 0, 17])
    (c, k), t = ds[idx]
    assert torch.equal(c, cats[idx]) and torch.equal(k, conts[idx]) and torch.equal(t, ys[idx])
    seen = torch.cat([yb for _, yb in data.valid_dl])
    assert torch.equal(seen, data.valid_dl.dl.dataset.y)  # validation: in order, nothing dropped


def test_processed_values_match_the_frame(data, adult):
    _, df = adult
    ds = data.valid_dl.dl.dataset
    (cats, conts), y = ds.x, ds.y
    rows = df.iloc[800:1000]
    workclass = np.array(data.processor.classes["workclass"], dtype=object)[cats[:, 0].numpy()]
    assert (workclass == rows["workclass"].to_numpy()).all()
    train_age = df["age"].drop(index=range(800, 1000))
    expected = (rows["age"].to_numpy() - train_age.mean()) / (train_age.std() + 1e-7)
    np.testing.assert_allclose(conts[:, 0].numpy(), expected, rtol=1e-5)
    assert (y.numpy() == (rows[DEP].to_numpy() == ">=50k")).all()


def test_test_set_uses_the_training_processor(data, adult):
    _, df = adult
    test_x = data.test_ds.x
    valid_x = data.valid_ds.x
    assert test_x.processor is data.processor
    np.testing.assert_array_equal(test_x.codes, valid_x.codes)  # the same rows, the same processing
    np.testing.assert_array_equal(test_x.conts, valid_x.conts)
    assert isinstance(data.train_ds.y, CategoryList)


def test_show_batch_decodes_rows(data, adult, capsys):
    _, df = adult
    shown = data.show_batch(rows=5, ds_type=DatasetType.Valid, return_df=True)
    assert list(shown.columns) == CAT + ["education-num_na"] + CONT + ["target"]
    rows = df.iloc[800:805]
    assert shown["education"].tolist() == rows["education"].tolist()
    np.testing.assert_allclose(shown["age"].to_numpy(), rows["age"].to_numpy(), rtol=1e-5)
    assert shown["target"].tolist() == rows[DEP].tolist()
    data.show_batch(rows=3)
    out = capsys.readouterr().out
    assert "workclass" in out and "target" in out and len(out.strip().splitlines()) == 4


def test_item_and_repr(data):
    line = data.train_ds.x[0]
    assert "workclass" in str(line) and "age" in str(line)
    assert "TabularList" in repr(data.train_ds.x)


def test_from_df_factory_and_random_split(adult):
    path, df = adult
    data = TabularDataBunch.from_df(path, df, DEP, valid_idx=range(2500, 3000), procs=PROCS, cat_names=CAT,
                                    cont_names=CONT, test_df=df.iloc[:40], bs=128)
    assert (len(data.train_ds), len(data.valid_ds), len(data.test_ds)) == (2500, 500, 40)
    assert isinstance(data.test_ds.y, EmptyLabelList) and data.batch_size == 128

    def valid_rows(seed):
        lls = (TabularList.from_df(df, cat_names=CAT, cont_names=CONT, procs=PROCS)
               .split_by_rand_pct(0.2, seed=seed).label_from_df(DEP))
        return lls.valid.x.items

    assert len(valid_rows(1)) == 600
    np.testing.assert_array_equal(valid_rows(1), valid_rows(1))
    assert not np.array_equal(valid_rows(1), valid_rows(2))


def test_float_list_log_target(adult):
    _, df = adult
    lls = (TabularList.from_df(df, cat_names=CAT, cont_names=["fnlwgt"], procs=PROCS)
           .split_by_idx(range(100)).label_from_df("age", label_cls=FloatList, log=True))
    data = lls.databunch(bs=32)
    y = data.valid_dl.dl.dataset.y
    assert y.dtype == torch.float32
    np.testing.assert_allclose(y.numpy(), np.log(df["age"].iloc[:100].to_numpy()), rtol=1e-6)
    assert data.c == 1


def test_errors_say_what_and_where(adult):
    path, df = adult
    with pytest.raises(DataError, match=r"no column 'salry'.*'salary'"):
        TabularDataBunch.from_df(path, df, "salry", valid_idx=range(10), cat_names=CAT, cont_names=CONT)
    with pytest.raises(DataError, match=r"no column 'edu'.*its columns are \['age', 'workclass'"):
        TabularList.from_df(df, cat_names=["edu"], cont_names=CONT)
    bad = df.copy()
    bad["fnlwgt"] = bad["fnlwgt"].astype(object)
    bad.loc[7, "fnlwgt"] = "unknown"
    with pytest.raises(DataError, match=r"'fnlwgt' holds values that are not numbers: 'unknown' \(1 row, first at row 7\)"):
        TabularList.from_df(bad, cat_names=CAT, cont_names=CONT)
    nan_y = df.copy()
    nan_y.loc[[11, 12], DEP] = np.nan
    src = TabularList.from_df(nan_y, cat_names=CAT, cont_names=CONT, procs=PROCS).split_by_idx(range(100))
    with pytest.raises(DataError, match=r"'salary' is missing in 2 rows \(rows 11, 12\)"):
        src.label_from_df(DEP)
    with pytest.raises(DataError, match="the table is empty"):
        TabularList.from_df(df.iloc[:0], cat_names=CAT, cont_names=CONT)
    with pytest.raises(DataError, match="is also an input"):
        (TabularList.from_df(df, cat_names=CAT + [DEP], cont_names=CONT, procs=PROCS).split_by_idx(range(10))
         .label_from_df(DEP))
    with pytest.raises(DataError, match="needs a pandas DataFrame"):
        TabularList.from_df(df.to_numpy(), cat_names=CAT)
    with pytest.raises(ConfigError, match="not processed yet"):
        TabularList.from_df(df, cat_names=CAT, cont_names=CONT).tensors()
    with pytest.raises(DataError, match=r"'education-num' has 1 missing values|add FillMissing"):
        (TabularList.from_df(df.iloc[:300], cat_names=CAT, cont_names=CONT, procs=[Categorify])
         .split_by_idx(range(10)))
