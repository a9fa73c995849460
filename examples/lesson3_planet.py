"""Lesson 3: multi-label classification with the data block API (F3:3440-3800), planet-style.

The data is the bundled planet_tiny stand-in: 1,200 mosaics of real Fashion-MNIST items, each
tagged with the classes it shows (space-separated tags in labels.csv, as Planet's). The code is
the course's: `ImageList.from_csv(...).split_by_rand_pct(0.2).label_from_df(label_delim=' ')`,
`accuracy_thresh` and `fbeta` at thresh 0.2, then progressive resizing by swapping `learn.data`.

    python examples/lesson3_planet.py --out out/lesson3
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from deftly.vision import *  # noqa: E402,F403  (the course's import line)


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("out/lesson3"))
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--size2", type=int, default=96, help="the larger size of progressive resizing")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--epochs2", type=int, default=6)
    p.add_argument("--bs", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--lr2", type=float, default=5e-3, help="top learning rate after unfreeze()")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    set_seed(42)

    path = untar_data(URLs.PLANET_TINY)
    df = pd.read_csv(path / "labels.csv")
    print(df.head())
    tfms = get_transforms(flip_vert=True, max_lighting=0.1, max_zoom=1.05, max_warp=0.)
    np.random.seed(42)
    src = (ImageList.from_csv(path, "labels.csv", folder="train", suffix=".jpg")
           .split_by_rand_pct(0.2)
           .label_from_df(label_delim=" "))
    stats = arch_stats(models.efficientnet_lite0)
    data = src.transform(tfms, size=args.size).databunch(bs=args.bs).normalize(stats)
    print(data)
    data.show_batch(rows=3, figsize=(9, 9))
    plt.savefig(args.out / "show_batch.png")
    plt.close("all")

    acc_02 = partial(accuracy_thresh, thresh=0.2)
    f_score = partial(fbeta, thresh=0.2)
    learn = cnn_learner(data, models.efficientnet_lite0, metrics=[acc_02, f_score])
    learn.lr_find()
    lr = args.lr
    learn.fit_one_cycle(args.epochs, slice(lr))
    learn.save("stage-1-64")

    # progressive resizing: the same learner on bigger images
    data = src.transform(tfms, size=args.size2).databunch(bs=args.bs).normalize(stats)
    learn.data = data
    learn.unfreeze()
    learn.fit_one_cycle(args.epochs2, slice(args.lr2 / 10, args.lr2))
    learn.save("stage-2-96")

    valid_loss, acc, f2 = learn.validate()
    # the loss of a model that ignores the pixels and predicts each tag's training frequency
    freq = torch.stack([t for _, t in (data.train_ds.encoded(i) for i in range(len(data.train_ds)))]).mean(0)
    targets = torch.stack([t for _, t in (data.valid_ds.encoded(i) for i in range(len(data.valid_ds)))])
    baseline = float(F.binary_cross_entropy(freq.expand_as(targets), targets))
    img = open_image(data.valid_ds.x.items[0])
    pred, _, probs = learn.predict(img, thresh=0.2)
    print(f"predict({data.valid_ds.x.items[0].name}) -> {pred}; actual {data.valid_ds.y[0]}")
    print(f"planet: valid_loss={valid_loss:.3f} baseline_loss={baseline:.3f} accuracy_thresh={float(acc):.3f} "
          f"fbeta={float(f2):.3f} seconds={time.perf_counter() - start:.0f}")
    return float(f2)


if __name__ == "__main__":
    main()
