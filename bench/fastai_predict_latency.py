"""The fastai side of bench/predict_latency.py: fastai 2.8.12 exports a resnet34 learner, loads it back and
predicts one image file.

Runs in bench/.venv-peers (it imports nothing from deftly). The driver passes the image file, the folder
of training images and the file names to use; this script builds the DataLoaders the way the course
does (labels from the file names, 224 px, ImageNet statistics), with torch's threads set to --threads
(intra-op) and 1 (inter-op):

    dls = ImageDataLoaders.from_name_re(folder, files, pat, valid_pct=0.25, seed=0, item_tfms=Resize(224),
                                        batch_tfms=Normalize.from_stats(*imagenet_stats), bs=4, num_workers=0)
    learn = vision_learner(dls, resnet34, pretrained=False); learn.export(file)
    learn = load_learner(file); learn.predict(image)

and times, in rounds after --warmup untimed calls: the bare `model(x)` on the prepared input (a plain
tensor, under torch.inference_mode), `learn.predict(image)`, and the parts predict is made of
(`dls.test_dl([image])`, `get_preds(dl, with_input=True, with_decoded=True)`, `dls.decode_batch`),
plus predict inside `learn.no_bar()`. Prints one JSON line of lists of seconds.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

from timing import time_steps  # bench/timing.py: the script's folder is on sys.path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image", required=True)
    p.add_argument("--folder", required=True)
    p.add_argument("--files", required=True, help="a text file of training image names, one a line")
    p.add_argument("--pat", required=True)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    from fastai.learner import load_learner
    from fastai.torch_core import set_seed
    from fastai.vision.all import (ImageDataLoaders, Normalize, Resize, imagenet_stats, resnet34,
                                   vision_learner)

    folder = Path(args.folder)
    files = [folder / line.strip() for line in Path(args.files).read_text().splitlines() if line.strip()]
    set_seed(0)
    sink = open(os.devnull, "w")

    @contextlib.contextmanager
    def quiet():  # fastai's progress bars go nowhere (a server's logs would not show them either)
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield

    with quiet():
        dls = ImageDataLoaders.from_name_re(folder, files, args.pat, valid_pct=0.25, seed=0,
                                            item_tfms=Resize(args.size),
                                            batch_tfms=Normalize.from_stats(*imagenet_stats), bs=4, num_workers=0)
        learn = vision_learner(dls, resnet34, pretrained=False)
        with tempfile.TemporaryDirectory() as tmp:
            export = Path(tmp) / "export.pkl"
            learn.export(export)
            learn = load_learner(export, cpu=True)
    image = Path(args.image)
    model = learn.model.eval()
    xb = learn.dls.test_dl([image], num_workers=0).one_batch()[0]
    x = xb.as_subclass(torch.Tensor)

    def bare() -> None:
        with torch.inference_mode():
            model(x)

    def predict() -> None:
        with quiet():
            learn.predict(image)

    def predict_no_bar() -> None:
        with quiet(), learn.no_bar():
            learn.predict(image)

    state: dict = {}

    def test_dl() -> None:
        state["dl"] = learn.dls.test_dl([image], num_workers=0)

    def get_preds() -> None:
        with quiet():
            state["out"] = learn.get_preds(dl=state["dl"], with_input=True, with_decoded=True)

    def decode() -> None:
        inp, _, _, dec_preds = state["out"]
        learn.dls.decode_batch((inp,) + (dec_preds,))

    steps = {"bare": bare, "predict": predict, "predict_no_bar": predict_no_bar, "test_dl": test_dl,
             "get_preds": get_preds, "decode": decode}
    times = time_steps(steps, args.warmup, args.runs)
    with quiet():
        label = str(learn.predict(image)[0])
    sys.stdout.write(json.dumps({"times": times, "label": label, "input": list(x.shape),
                                 "threads": [torch.get_num_threads(), torch.get_num_interop_threads()]}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
