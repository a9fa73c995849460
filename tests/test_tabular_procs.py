"""Tabular processors on the bundled UCI Adult sample: fitted on the training rows only, state as
plain data, the course's `proc(df)` / `proc(df, test=True)` calls, and clear errors."""
import json

import numpy as np
import pandas as pd
import pytest

from deftly.core.errors import ConfigError, DataError
from deftly.tabular import Categorify, FillMissing, Normalize, TabularProcessor
from deftly.tabular.procs import TabularProc

CAT = ["workclass", "education", "occupation"]
CONT = ["age", "fnlwgt", "education-num"]


@pytest.fixture(scope="module")
def adult(data_home):
    """The first 4,000 rows of the bundled adult.csv (education-num and occupation have NaNs)."""
    path = data_home["adult"]
    return pd.read_csv(path / "adult.csv").iloc[:4000]


def split(df):
    return df.iloc[:3000].copy(), df.iloc[3000:].copy()


def test_fill_missing_median_from_training_rows_and_na_column(adult):
    train, valid = split(adult)
    fm = FillMissing(list(CAT), list(CONT))
    fm(train)
    fm(valid, test=True)
    median = float(np.nanmedian(adult["education-num"].iloc[:3000]))
    assert fm.na_dict == {"education-num": median}  # only the column with NaNs in training
    assert "education-num_na" in fm.cat_names and "age_na" not in fm.cat_names
    was_nan = adult["education-num"].iloc[3000:].isna().to_numpy()
    assert was_nan.any()
    assert (valid["education-num_na"].to_numpy() == was_nan).all()
    assert (valid["education-num"].to_numpy()[was_nan] == median).all()
    assert not train["education-num"].isna().any()


@pytest.mark.parametrize("strategy", ["median", "common", "constant"])
def test_fill_missing_strategies(adult, strategy):
    train = adult.iloc[:3000].copy()
    values = adult["education-num"].iloc[:3000].dropna()
    expected = {"median": float(values.median()), "common": float(values.mode().min()), "constant": -1.0}[strategy]
    fm = FillMissing(CAT, CONT, fill_strategy=strategy, fill_val=-1.0, add_col=False)
    fm(train)
    assert fm.na_dict["education-num"] == pytest.approx(expected)
    assert "education-num_na" not in train.columns


def test_fill_missing_rejects_nan_in_a_column_clean_in_training(adult):
    train, valid = split(adult)
    fm = FillMissing(CAT, CONT)
    fm(train)
    valid.loc[valid.index[3], "age"] = np.nan
    with pytest.raises(DataError, match=r"'age' has missing values \(1 row, first at row 3\)"):
        fm(valid, test=True)


def test_categorify_training_categories_nan_and_unseen_are_na(adult):
    train, valid = split(adult)
    valid = valid.copy()
    valid.loc[valid.index[0], "workclass"] = "Astronaut"  # never seen in training
    cat = Categorify(CAT, CONT)
    cat(train)
    cat(valid, test=True)
    assert list(train["workclass"].cat.categories) == sorted(adult["workclass"].iloc[:3000].unique())
    assert train["occupation"].cat.codes.min() == -1  # pandas' code for NaN, as the course shows
    assert valid["workclass"].cat.codes.iloc[0] == -1
    codes = cat.codes(valid, "workclass")
    assert codes[0] == 0 and (codes[1:] > 0).all()  # the model reads code + 1; 0 is #na#
    assert cat.classes("workclass")[0] == "#na#"
    assert cat.classes("workclass")[1:] == list(train["workclass"].cat.categories)
    other = pd.Series(["Astronaut", np.nan, train["workclass"].iloc[0]], dtype="category")  # other categories
    assert cat.codes(pd.DataFrame({"workclass": other}), "workclass")[:2].tolist() == [0, 0]
    assert cat.codes(pd.DataFrame({"workclass": other}), "workclass")[2] == codes_of(train, "workclass")[0]


def codes_of(df, name):
    return df[name].cat.codes.to_numpy() + 1


def test_normalize_uses_training_statistics(adult):
    train, valid = split(adult)
    norm = Normalize(CAT, ["age", "fnlwgt"])
    norm(train)
    norm(valid, test=True)
    raw = adult["age"].to_numpy(dtype=float)
    mean, std = raw[:3000].mean(), raw[:3000].std(ddof=1)
    assert norm.means["age"] == pytest.approx(mean)
    assert train["age"].mean() == pytest.approx(0, abs=1e-9)
    np.testing.assert_allclose(valid["age"].to_numpy(), (raw[3000:] - mean) / (std + 1e-7))
    assert abs(valid["age"].mean()) > 1e-6  # not refitted on the validation rows


def test_normalize_asks_for_fill_missing_first(adult):
    with pytest.raises(DataError, match="put FillMissing before Normalize"):
        Normalize(CAT, CONT)(adult.copy())


def test_processor_state_is_json_and_rebuilds_the_same_arrays(adult):
    proc = TabularProcessor(CAT, CONT, [Normalize, FillMissing(fill_strategy="common"), Categorify])
    codes, conts = proc.fit_transform(adult.iloc[:3000])
    assert [type(p).__name__ for p in proc.procs] == ["FillMissing", "Categorify", "Normalize"]
    assert proc.cat_names == CAT + ["education-num_na"] and proc.cont_names == CONT
    assert codes.dtype == np.int64 and codes.shape == (3000, 4)
    assert conts.dtype == np.float32 and conts.shape == (3000, 3)
    text = json.dumps(proc.state())
    again = TabularProcessor.from_state(json.loads(text))
    for a, b in zip(proc.transform(adult.iloc[3000:]), again.transform(adult.iloc[3000:])):
        np.testing.assert_array_equal(a, b)
    assert again.procs[0].fill_strategy.value == "common"


def test_processor_leaves_the_frame_alone(adult):
    before = adult.copy()
    TabularProcessor(CAT, CONT, [FillMissing, Categorify, Normalize]).fit_transform(adult)
    pd.testing.assert_frame_equal(adult, before)


def test_text_in_a_continuous_column_names_column_and_values(adult):
    df = adult.copy()
    df["age"] = df["age"].astype(object)
    df.loc[[5, 9], "age"] = ["forty", "n/a"]
    with pytest.raises(DataError, match=r"'age' holds values that are not numbers: 'forty', 'n/a' \(2 rows, first at row 5\)"):
        TabularProcessor(CAT, CONT, [FillMissing]).fit(df)


def test_bad_configuration(adult):
    with pytest.raises(ConfigError, match="both in cat_names and in cont_names"):
        TabularProcessor(["age"], ["age"])
    with pytest.raises(ConfigError, match="tabular processors"):
        TabularProcessor(CAT, CONT, ["Normalize"])
    with pytest.raises(ConfigError, match="not been fitted"):
        Normalize(CAT, CONT).apply(adult.copy())
    with pytest.raises(ConfigError, match="unknown tabular processor"):
        TabularProc.from_state({"name": "Shuffle", "cat_names": [], "cont_names": []})
    with pytest.raises(DataError, match=r"no column 'wrkclass'.*'workclass'"):
        TabularProcessor(["wrkclass"], CONT).fit(adult)
