"""CollabDataBunch.from_df: v1's columns, split and Categorify; batches as tensor slices; bad input."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from movielens_home import movielens_home

from deftly.collab import NA, CollabDataBunch, CollabDataset
from deftly.core.errors import ConfigError, DataError
from deftly.data.databunch import DatasetType


@pytest.fixture(scope="session")
def ml_sample(tmp_path_factory):
    return pd.read_csv(movielens_home(tmp_path_factory)["ml_sample"] / "ratings.csv")


def frame(n=200, n_users=12, n_items=9, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"user": rng.integers(1, n_users + 1, n), "item": rng.integers(1, n_items + 1, n),
                         "stars": rng.integers(1, 6, n).astype(float), "when": np.arange(n)})


def test_first_three_columns_by_default_and_v1_categorify(ml_sample):
    data = CollabDataBunch.from_df(ml_sample, seed=42)
    assert data.names == ("userId", "movieId", "rating")
    train_rows = ml_sample.iloc[data.train_idx]
    for name in ("userId", "movieId"):
        assert data.classes[name] == [NA, *sorted(train_rows[name].unique())]
    assert data.get_emb_szs() == [(101, 21), (101, 21)]  # v1's rule: round(1.6 * 101**0.56)
    assert data.get_emb_szs({"movieId": 7}) == [(101, 21), (101, 7)]
    assert data.c == 1 and data.loss_kind == "mse"


def test_split_is_v1s_seeded_permutation_and_leaves_numpy_alone(ml_sample):
    np.random.seed(0)
    expected_next = np.random.rand()
    np.random.seed(0)
    data = CollabDataBunch.from_df(ml_sample, pct_val=0.1, seed=42)
    assert np.random.rand() == expected_next  # the global numpy state was not touched
    n = len(ml_sample)
    np.random.seed(42)  # what v1's split_by_rand_pct does
    order = np.random.permutation(n)
    assert np.array_equal(data.valid_idx, order[:int(0.1 * n)])
    assert np.array_equal(np.sort(np.concatenate([data.train_idx, data.valid_idx])), np.arange(n))
    assert (len(data.train_ds), len(data.valid_ds)) == (n - int(0.1 * n), int(0.1 * n))
    again = CollabDataBunch.from_df(ml_sample, valid_pct=0.1, seed=42)  # later v1 name
    assert np.array_equal(again.valid_idx, data.valid_idx)
    other = CollabDataBunch.from_df(ml_sample, pct_val=0.1, seed=43)
    assert not np.array_equal(other.valid_idx, data.valid_idx)


def test_batches_are_tensor_slices_of_the_coded_table(ml_sample):
    data = CollabDataBunch.from_df(ml_sample, seed=42, bs=100)
    assert isinstance(data.train_ds, CollabDataset)
    (users, items), y = data.one_batch(DatasetType.Valid)
    assert users.dtype == items.dtype == torch.int64 and y.dtype == torch.float32 and len(y) == 100
    rows = ml_sample.iloc[data.valid_idx[:100]]  # the validation loader keeps the order
    classes = data.classes
    assert [classes["userId"][int(u)] for u in users] == rows["userId"].tolist()
    assert [classes["movieId"][int(i)] for i in items] == rows["movieId"].tolist()
    assert y.tolist() == rows["rating"].tolist()
    idx = torch.tensor([3, 0, 7])  # a dataset indexed by an index tensor returns the slice
    (u3, i3), y3 = data.valid_ds[idx]
    assert torch.equal(u3, data.valid_ds.x[0][idx]) and torch.equal(y3, data.valid_ds.y[idx])
    assert len(data.train_dl) == len(data.train_ds) // 100  # the last partial batch is dropped (v1)
    (tu, _), ty = next(iter(data.train_dl))
    assert len(ty) == 100 and tu.max() < len(classes["userId"])


def test_named_columns_string_ids_and_ids_only_in_validation():
    df = frame()
    df["title"] = "movie " + df["item"].astype(str)
    df.loc[0, "title"] = "only once"  # a title seen once: in the validation rows it is #na#
    data = CollabDataBunch.from_df(df, user_name="user", item_name="title", rating_name="stars", pct_val=0.25,
                                   seed=3)
    assert data.names == ("user", "title", "stars")
    in_valid = 0 in data.valid_idx
    assert ("only once" in data.classes["title"]) is not in_valid
    if in_valid:
        pos = int(np.flatnonzero(data.valid_idx == 0)[0])
        assert int(data.valid_ds.x[1][pos]) == 0  # code of #na#


def test_missing_ids_become_na_as_v1():
    df = frame().astype({"user": float})
    df.loc[5, "user"] = np.nan
    data = CollabDataBunch.from_df(df, pct_val=0.0, seed=0)
    assert data.valid_ds is None and NA == data.classes["user"][0] and np.nan not in data.classes["user"][1:]
    pos = int(np.flatnonzero(data.train_idx == 5)[0])
    assert int(data.train_ds.x[0][pos]) == 0


def test_test_rows_use_training_classes_and_may_lack_ratings():
    df = frame()
    test = pd.DataFrame({"user": [1, 2, 999], "item": [3, 4, 5]})
    data = CollabDataBunch.from_df(df, seed=0, test=test)
    users, items = data.test_ds.x
    classes = data.classes
    assert [classes["user"][int(u)] for u in users[:2]] == [1, 2] and int(users[2]) == 0  # unseen -> #na#
    assert data.test_ds.y.tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(DataError, match="item column 'item' is not in the ratings frame"):
        CollabDataBunch.from_df(df, seed=0, test=test[["user"]])


def test_show_batch_prints_original_ids(ml_sample, capsys):
    data = CollabDataBunch.from_df(ml_sample, seed=42)
    data.show_batch(rows=4, ds_type=DatasetType.Valid)
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["userId", "movieId", "target"] and len(out) == 5
    first = ml_sample.iloc[data.valid_idx[0]]
    assert out[1].split() == [str(int(first["userId"])), str(int(first["movieId"])), str(first["rating"])]


@pytest.mark.parametrize("bad, kwargs, message", [
    ("text", {}, r"rating column 'stars' .* must hold numbers; 2 value\(s\) are not, e.g. 'four', '4 stars' in rows \[3, 8\]"),
    ("nan", {}, r"rating column 'stars' .* has 1 missing \(NaN\) value\(s\), in rows \[4\]"),
    ("inf", {}, r"rating column 'stars' .* infinite value\(s\) in rows \[2\]"),
    ("empty", {}, r"the ratings frame is empty \(columns \['user', 'item', 'stars', 'when'\]\)"),
    ("none", {"user_name": "userId"}, r"user column 'userId' is not in the ratings frame; its columns are 'user', 'item', 'stars', 'when'"),
    ("none", {"rating_name": "rating"}, r"rating column 'rating' is not in the ratings frame"),
    ("two", {}, r"needs user, item and rating columns \(the first three by default\); it has only \['user', 'item'\]"),
    ("list", {}, r"needs a pandas DataFrame of ratings, got list"),
])
def test_bad_ratings_frames_are_named(bad, kwargs, message):
    df = frame(20)
    if bad == "text":
        df["stars"] = df["stars"].astype(object)
        df.loc[3, "stars"], df.loc[8, "stars"] = "four", "4 stars"
    elif bad == "nan":
        df.loc[4, "stars"] = np.nan
    elif bad == "inf":
        df.loc[2, "stars"] = np.inf
    elif bad == "empty":
        df = df.iloc[:0]
    elif bad == "two":
        df = df[["user", "item"]]
    elif bad == "list":
        df = df.values.tolist()
    with pytest.raises(DataError, match=message):
        CollabDataBunch.from_df(df, seed=0, **kwargs)


def test_numeric_strings_are_ratings_and_bad_settings_are_config_errors():
    df = frame(20)
    data = CollabDataBunch.from_df(df.assign(stars=df["stars"].astype(str)), seed=0)  # '4.0' reads as 4.0
    assert data.train_ds.y.dtype == torch.float32
    with pytest.raises(ConfigError, match=r"pct_val must be in \[0, 1\), got 1.0"):
        CollabDataBunch.from_df(df, pct_val=1.0)
    with pytest.raises(ConfigError, match="three different columns"):
        CollabDataBunch.from_df(df, user_name="item")
    with pytest.raises(DataError, match="bs must be a positive batch size"):
        CollabDataBunch.from_df(df, bs=0)
