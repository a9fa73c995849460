"""The fastai side of bench/tabular_speed.py: fastai 2.8.12 trains the lesson 4 network for one epoch.

Runs in bench/.venv-peers (it imports nothing from deftly). It builds the same 1,020,000-row frame
as the driver (`make_frame` from bench/tabular_speed.py, read from the CSV the driver names), then

    to = TabularPandas(df, procs=[Categorify, FillMissing, Normalize], cat_names=CAT, cont_names=CONT,
                       y_names='salary', y_block=CategoryBlock(), splits=(train rows, last 20,000 rows))
    dls = to.dataloaders(bs=bs)
    learn = tabular_learner(dls, layers=[200, 100], metrics=accuracy,
                            opt_func=partial(Adam, mom=0.9, sqr_mom=0.99, eps=1e-8, wd=0.01))
    with learn.no_bar(), learn.no_logging(): learn.fit(1, lr)     # a warm-up, then --rounds timed

and prints one JSON line: {"train_rows", "prep_s", "epoch_s": [...], "accuracy"}.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tabular_speed import BETAS, CAT, CONT, DEP, LAYERS, N_VALID, WD, make_frame  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--csv", required=True)
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--bs", type=int, required=True)
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import torch
    from fastai.tabular.all import (
        Adam, Categorify, CategoryBlock, FillMissing, Normalize, TabularPandas, accuracy, tabular_learner,
    )

    torch.set_num_threads(args.threads)
    df = make_frame(args.csv, args.rows)
    n = len(df)
    t0 = time.perf_counter()
    splits = (list(range(n - N_VALID)), list(range(n - N_VALID, n)))
    to = TabularPandas(df, procs=[Categorify, FillMissing, Normalize], cat_names=CAT, cont_names=CONT,
                       y_names=DEP, y_block=CategoryBlock(), splits=splits)
    dls = to.dataloaders(bs=args.bs, device=torch.device("cpu"))
    prep = time.perf_counter() - t0
    opt = partial(Adam, mom=BETAS[0], sqr_mom=BETAS[1], eps=1e-8, wd=WD)
    learn = tabular_learner(dls, layers=LAYERS, metrics=accuracy, opt_func=opt)
    times = []
    for r in range(1 + args.rounds):
        gc.collect()
        t0 = time.perf_counter()
        with learn.no_bar(), learn.no_logging():
            learn.fit(1, args.lr)
        if r > 0:
            times.append(time.perf_counter() - t0)
    acc = float(learn.recorder.values[-1][-1])
    print(json.dumps({"train_rows": n - N_VALID, "prep_s": prep, "epoch_s": times, "accuracy": acc}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
