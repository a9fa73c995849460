"""The fastai side of bench/collab_quality.py: fastai 2.8.12 trains the lesson 5 dot-product model.

Runs in bench/.venv-peers (it imports nothing from deftly). It reads the ratings CSV the driver
wrote (userId, movieId, rating, is_valid: deftly's 10% split, so both sides train and validate on
the same rows), then for each seed

    set_seed(seed)
    to = TabularCollab(df, [Categorify], ['userId', 'movieId'], y_names=['rating'],
                       y_block=TransformBlock(), splits=IndexSplitter(valid rows)(range_of(df)))
    dls = to.dataloaders(bs=bs)                         # what CollabDataLoaders.from_df builds
    learn = collab_learner(dls, n_factors=nf, y_range=(0, 5.5), wd=wd)
    learn.fit_one_cycle(epochs, lr, pct_start=..., div_final=...)

and prints one JSON line: {"rmse": [...], "seconds": [...]} (the validation RMSE after the last
epoch, computed from `learn.validate()`'s MSE).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from functools import partial


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[42])
    p.add_argument("--n-factors", type=int, required=True)
    p.add_argument("--wd", type=float, required=True)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--bs", type=int, required=True)
    p.add_argument("--pct-start", type=float, required=True)
    p.add_argument("--div-final", type=float, required=True)
    p.add_argument("--y-range", type=float, nargs=2, default=[0.0, 5.5])
    p.add_argument("--eps", type=float, default=None, help="Adam's eps (default: fastai's own, 1e-5)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import numpy as np
    import pandas as pd
    import torch
    from fastai.collab import TabularCollab, collab_learner
    from fastai.data.block import TransformBlock
    from fastai.data.transforms import IndexSplitter
    from fastai.optimizer import Adam
    from fastai.tabular.core import Categorify
    from fastai.torch_core import set_seed
    from fastcore.basics import range_of

    torch.set_num_threads(args.threads)
    df = pd.read_csv(args.data)
    valid = np.flatnonzero(df.pop("is_valid").to_numpy())
    rmses, seconds = [], []
    for seed in args.seeds:
        set_seed(seed)
        splits = IndexSplitter(valid)(range_of(df))
        to = TabularCollab(df, [Categorify], ["userId", "movieId"], y_names=["rating"],
                           y_block=TransformBlock(), splits=splits)
        dls = to.dataloaders(bs=args.bs)
        extra = {} if args.eps is None else {"opt_func": partial(Adam, eps=args.eps)}
        learn = collab_learner(dls, n_factors=args.n_factors, y_range=tuple(args.y_range), wd=args.wd, **extra)
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            t0 = time.perf_counter()
            learn.fit_one_cycle(args.epochs, args.lr, pct_start=args.pct_start, div_final=args.div_final)
            seconds.append(time.perf_counter() - t0)
            mse = float(learn.validate()[0])
        rmses.append(math.sqrt(mse))
    sys.stdout.write(json.dumps({"rmse": rmses, "seconds": seconds}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
