"""The fastai side of bench/vision_train.py: fastai 2.8.12 trains a resnet18 from scratch.

Runs in bench/.venv-peers as a long-lived subprocess of vision_train.py, which sends one JSON
request per line on stdin: "setup" with the files and split (as for
bench/fastai_vision_pipeline.py), then per round a "fit", which builds

    set_seed(seed)
    dls = <the DataBlock of fastai_vision_pipeline.py: Resize(size), aug_transforms(...),
           Normalize.from_stats(*imagenet_stats)>, bs 64, num_workers=0
    learn = vision_learner(dls, resnet18, pretrained=False, metrics=accuracy)

and answers {"ready"}. Each "go" then runs one epoch of

    learn.fit_one_cycle(epochs, lr)     # fp32; progress bars and table on, written to /dev/null

which pauses at the end of every epoch but the last (answering {"epoch": k} and waiting for the
next "go"), so that the driver can run a deftly epoch in between. After the last epoch it
answers {"done", "seconds" (the fit's wall time minus the pauses), "accuracy" (the last
epoch's), "params"}.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fastai_vision_pipeline import build_dls, setup  # noqa: E402
from vision_pipeline import next_request, reply, serve  # noqa: E402


def _wait_go() -> None:
    request = next_request()
    if request is None or request.get("cmd") != "go":
        raise RuntimeError(f"expected a 'go' request, got {request!r}")


def fit(req: dict) -> dict:
    from fastai.callback.core import Callback
    from fastai.vision.all import accuracy, resnet18, set_seed, vision_learner

    paused = 0.0

    class AfterEachEpoch(Callback):
        order = 1000  # after the Recorder and the progress bar

        def after_epoch(self) -> None:
            nonlocal paused
            if self.epoch < self.n_epoch - 1:  # hand over to deftly; wait for the next "go"
                t0 = time.perf_counter()
                reply({"epoch": self.epoch + 1})
                _wait_go()
                paused += time.perf_counter() - t0

    set_seed(req["seed"])
    dls = build_dls(req["size"], 0, persistent=False)
    learn = vision_learner(dls, resnet18, pretrained=False, metrics=accuracy)
    n_params = sum(p.numel() for p in learn.model.parameters())
    gc.collect()
    reply({"ready": True})
    _wait_go()
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        t0 = time.perf_counter()
        learn.fit_one_cycle(req["epochs"], req["lr"], div=req["div"], div_final=req["div_final"],
                            pct_start=req["pct_start"], cbs=AfterEachEpoch())
        seconds = time.perf_counter() - t0 - paused
    acc = float(learn.recorder.values[-1][-1])
    del learn, dls
    gc.collect()
    return {"done": True, "seconds": seconds, "accuracy": acc, "params": n_params}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")  # said on fastai's import
    import torch
    import fastai.vision.all  # noqa: F401

    torch.set_num_threads(args.threads)
    return serve({"setup": setup, "fit": fit})


if __name__ == "__main__":
    sys.exit(main())
