"""The fastai side of bench/loop_overhead.py: fastai 2.8.12's `Learner.fit` against the same plain
PyTorch loop, on the same data, models, DataLoaders and optimizer, timed the same way.

Runs in bench/.venv-peers (made by bench/peers.sh), which has fastai but no deftly: the plain
loop, the models and the timing come from loop_overhead.py beside this file, which imports
nothing from deftly at module level. loop_overhead.py --peer runs it as

    bench/.venv-peers/bin/python bench/fastai_loop_overhead.py --data MNIST.npz

where MNIST.npz holds x_train, y_train, x_valid, y_valid (the bundled sample: 8,000 + 2,000).

fastai's Learner gets the plain loop's torch DataLoaders (fastai accepts them as they are),
`torch.optim.AdamW(betas=(0.9, 0.99), weight_decay=0.01)` through `OptimWrapper`, cross-entropy
and `accuracy`, and keeps its default callbacks (TrainEvalCallback, Recorder, CastToTensor,
ProgressCallback) and its logger: progress bars and the epoch table are on, written to
/dev/null as the deftly side's are. `--no-progress` uses `learn.no_bar()` and `learn.no_logging()`.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import os
import sys
import warnings
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from loop_overhead import (  # noqa: E402
    BETAS, BS, DEFAULT_ROUNDS, LR, MODELS, WD, PlainLoop, datasets, detail_line, interleave, make_model,
    plain_loaders, set_threads, summary_line,
)


def fastai_epoch_fn(model: nn.Module, train_ds, valid_ds, sink, progress: bool = True, lr: float = LR):
    """A fastai Learner over torch DataLoaders; each call is `learn.fit(1, lr)` with stdout -> sink."""
    import fastai.callback.all  # noqa: F401  as `from fastai.vision.all import *` does: adds ProgressCallback to defaults.callbacks
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from fastai.metrics import accuracy
    from fastai.optimizer import OptimWrapper

    train_dl, valid_dl = plain_loaders(train_ds, valid_ds)
    dls = DataLoaders(train_dl, valid_dl)
    opt_func = partial(OptimWrapper, opt=torch.optim.AdamW, betas=BETAS, weight_decay=WD)
    learn = Learner(dls, model, loss_func=nn.CrossEntropyLoss(), opt_func=opt_func, metrics=accuracy, wd=WD)

    def run() -> None:
        with contextlib.redirect_stdout(sink), contextlib.ExitStack() as stack:
            if not progress:
                stack.enter_context(learn.no_bar())
                stack.enter_context(learn.no_logging())
            learn.fit(1, lr)

    return run, learn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path, help=".npz with x_train, y_train, x_valid, y_valid")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds-linear", type=int, default=DEFAULT_ROUNDS["linear"])
    parser.add_argument("--rounds-cnn", type=int, default=DEFAULT_ROUNDS["cnn"])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)

    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")  # said on fastai's import
    import fastai

    set_threads(args.threads)
    with np.load(args.data) as z:
        train = (torch.from_numpy(z["x_train"]), torch.from_numpy(z["y_train"]))
        valid = (torch.from_numpy(z["x_valid"]), torch.from_numpy(z["y_valid"]))
    rounds = {"linear": args.rounds_linear, "cnn": args.rounds_cnn}
    assert BS == 64
    with open(os.devnull, "w") as sink:
        for name in [m for m in args.models.split(",") if m]:
            train_ds, valid_ds = datasets(name, train, valid)
            model = make_model(name)
            plain = PlainLoop(copy.deepcopy(model), train_ds, valid_ds, out=sink)
            run, learn = fastai_epoch_fn(copy.deepcopy(model), train_ds, valid_ds, sink, not args.no_progress)
            times = interleave({"plain": plain.epoch, "fastai": run}, rounds[name])
            line, ratio = summary_line(f"fastai {name}", "plain", "fastai", times)
            print(line, flush=True)
            if args.verbose:
                print(detail_line(f"fastai {name}", times))
                acc = float(learn.recorder.values[-1][-1]) if learn.recorder.values else float("nan")
                print(f"  fastai {name}: valid accuracy after {plain.n_epochs} epochs: plain {plain.accuracy:.4f}  "
                      f"fastai {acc:.4f}  (fastai {fastai.__version__}, torch {torch.__version__})", flush=True)
            print(f"fastai_{name}_ratio: {ratio:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
