"""Lesson 1, "other data formats" (F3:1214-1370): five ways to label MNIST_SAMPLE, then a CNN.

Scenario 1: labels are folder names (`from_folder`); 2: a CSV file (`from_csv`); 3: a regular
expression (`from_name_re`); 4: a function (`from_name_func`); 5: a list (`from_lists`). Then
`cnn_learner(data, models.resnet18, metrics=accuracy).fit(...)` as the course does (random init:
resnet18's ImageNet weights are not available offline). Runs on the bundled real-MNIST sample.

    python examples/lesson1_mnist.py --out out/lesson1_mnist
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
    p.add_argument("--out", type=Path, default=Path("out/lesson1_mnist"))
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    set_seed(42)

    path = untar_data(URLs.MNIST_SAMPLE)
    print("path.ls():", [p.name for p in path.ls()])
    print("(path/'train').ls():", [p.name for p in (path / "train").ls()])

    # Scenario 1: labels are folder names
    tfms = get_transforms(do_flip=False)
    data = ImageDataBunch.from_folder(path, ds_tfms=tfms, size=26)
    data.show_batch(rows=3, figsize=(5, 5))
    plt.savefig(args.out / "from_folder.png")
    plt.close("all")
    print("from_folder:", data.classes)

    # Scenario 2: a CSV file
    df = pd.read_csv(path / "labels.csv")
    print(df.head())
    data = ImageDataBunch.from_csv(path, ds_tfms=tfms, size=28)
    print("from_csv:", data.classes)

    # Scenario 3: a regular expression over the paths
    fn_paths = [path / name for name in df["name"]]
    pat = r"/(\d)/\d+\.png$"
    data = ImageDataBunch.from_name_re(path, fn_paths, pat=pat, ds_tfms=tfms, size=24)
    print("from_name_re:", data.classes)

    # Scenario 4: a function of the path
    data = ImageDataBunch.from_name_func(path, fn_paths, ds_tfms=tfms, size=24,
                                         label_func=lambda x: "3" if "/3/" in str(x) else "7")
    print("from_name_func:", data.classes)

    # Scenario 5: a list of labels
    labels = [("3" if "/3/" in str(x) else "7") for x in fn_paths]
    print(labels[:5])
    data = ImageDataBunch.from_lists(path, fn_paths, labels=labels, ds_tfms=tfms, size=24)
    print("from_lists:", data.classes)

    # The course then trains a resnet on the folder-labelled data
    data = ImageDataBunch.from_folder(path, ds_tfms=tfms, size=26, bs=64).normalize(imagenet_stats)
    learn = cnn_learner(data, models.resnet18, pretrained=False, metrics=accuracy)
    learn.fit_one_cycle(args.epochs, 1e-2)
    acc = float(learn.validate()[1])
    print(f"lesson1_mnist: accuracy={acc:.3f} seconds={time.perf_counter() - start:.0f}")
    return acc


if __name__ == "__main__":
    main()
