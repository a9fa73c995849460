"""One training epoch over 1,000,000 tabular rows: deftly vs fastai 2.8.12 vs a plain PyTorch loop.

Data: UCI Adult as the bundled `untar_data(URLs.ADULT_SAMPLE)/adult.csv` (32,561 real rows, fastai's
layout), resampled with replacement (numpy seed 0) to 1,000,000 training rows plus 20,000
validation rows; each continuous column gets Gaussian noise of 1% of its standard deviation, so
rows are not exact copies. 8 categorical columns (workclass, education, marital-status,
occupation, relationship, race, sex, native-country), 6 continuous (age, fnlwgt, education-num,
capital-gain, capital-loss, hours-per-week), target `salary` (2 classes); procs FillMissing,
Categorify, Normalize on both libraries.

Model: the lesson 4 network, `layers=[200, 100]`, the same embedding sizes on every side (v1's
rule, which fastai 2's `emb_sz_rule` also uses); optimizer AdamW(betas=(0.9, 0.99), wd 0.01) at a
constant learning rate, cross-entropy, batch size `--bs` (default 512) everywhere, one torch
thread (`--threads`).

What is timed: one `fit(1, lr)`: a shuffled pass over the 1,000,000 training rows (the last
partial batch dropped) and a validation pass with loss and accuracy.

    plain   the processed tensors deftly made; per epoch a torch.randperm, then batches as index
            slices `x_cat[idx], x_cont[idx], y[idx]`; forward, loss, backward, step, zero_grad,
            `loss.item()` kept; a validation pass under no_grad. The model is a deftly
            TabularModel (any nn.Module would do: it is the loop that is measured).
    deftly  `learn.fit(1, lr)` of `tabular_learner(data, layers=[200, 100], metrics=accuracy)`
            with the default callbacks (progress lines to /dev/null).
    fastai  bench/fastai_tabular_speed.py in bench/.venv-peers (--peer): TabularPandas +
            `dls = to.dataloaders(bs)`, `tabular_learner(dls, layers=[200, 100], metrics=accuracy)`,
            `learn.fit(1, lr)` (no progress bar, no logging).

plain and deftly alternate for `--rounds` timed epochs after a warm-up epoch (best epoch of each);
fastai runs `--peer-rounds` epochs after a warm-up in its own process. Preparing the data
(processing 1,020,000 rows into tensors) is timed once on each side and printed, not in the ratio.
The last two lines:

    tabular_speed_vs_fastai: X.X      (fastai epoch time / deftly epoch time; goal >= 10)
    tabular_overhead_vs_raw: X.XX     (deftly epoch time / plain epoch time; goal <= 1.1)

Without --peer, the first of them is not printed. This file imports nothing from deftly at module
level: the fastai script takes the frame builder and constants from here.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

BENCH = Path(__file__).resolve().parent
PEER_PY = BENCH / ".venv-peers" / "bin" / "python"
CAT = ["workclass", "education", "marital-status", "occupation", "relationship", "race", "sex", "native-country"]
CONT = ["age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
DEP = "salary"
LAYERS = [200, 100]
N_TRAIN, N_VALID = 1_000_000, 20_000
BS, LR, BETAS, WD = 512, 1e-3, (0.9, 0.99), 0.01


# --- shared with fastai_tabular_speed.py ---------------------------------------------------------
def make_frame(csv: str | os.PathLike, n_train: int = N_TRAIN, n_valid: int = N_VALID, seed: int = 0) -> pd.DataFrame:
    """Adult resampled to `n_train + n_valid` rows (validation last), continuous columns with 1% noise."""
    src = pd.read_csv(csv)[CAT + CONT + [DEP]]
    rng = np.random.default_rng(seed)
    df = src.iloc[rng.integers(0, len(src), n_train + n_valid)].reset_index(drop=True)
    for c in CONT:
        values = df[c].to_numpy(dtype=np.float64)
        std = float(np.nanstd(src[c].to_numpy(dtype=np.float64)))
        df[c] = values + rng.normal(0.0, 0.01 * std, len(df))  # NaN stays NaN
    return df


def best(times: list[float]) -> float:
    return min(times)


# --- plain PyTorch --------------------------------------------------------------------------------
class PlainLoop:
    """A careful user's loop over already-made tensors: shuffled index slices, then a validation pass."""

    def __init__(self, model, train: tuple, valid: tuple, bs: int, lr: float):
        import torch

        self.model, self.train, self.valid, self.bs = model, train, valid, bs
        self.opt = torch.optim.AdamW(model.parameters(), lr, betas=BETAS, weight_decay=WD)
        self.loss_func = torch.nn.CrossEntropyLoss()
        self.accuracy = float("nan")

    def epoch(self) -> None:
        import torch

        model, opt, loss_func, bs = self.model, self.opt, self.loss_func, self.bs
        (cats, conts), y = self.train
        model.train()
        order = torch.randperm(len(y))
        losses = []
        for i in range(len(y) // bs):
            idx = order[i * bs:(i + 1) * bs]
            loss = loss_func(model(cats[idx], conts[idx]), y[idx])
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(loss.item())
        (cats, conts), y = self.valid
        model.eval()
        total, correct = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(y), bs):
                out = model(cats[i:i + bs], conts[i:i + bs])
                yb = y[i:i + bs]
                total += loss_func(out, yb).item() * len(yb)
                correct += (out.argmax(1) == yb).sum().item()
        self.accuracy = correct / len(y)


# --- deftly ---------------------------------------------------------------------------------------
def deftly_side(df: pd.DataFrame, bs: int):
    """The DataBunch of `df` (validation = the last N_VALID rows) and the seconds it took to make."""
    from deftly.tabular import Categorify, FillMissing, Normalize, TabularList

    t0 = time.perf_counter()
    n = len(df)
    data = (TabularList.from_df(df, cat_names=CAT, cont_names=CONT, procs=[FillMissing, Categorify, Normalize])
            .split_by_idx(np.arange(n - N_VALID, n))
            .label_from_df(cols=DEP)
            .databunch(bs=bs, device="cpu"))
    return data, time.perf_counter() - t0


def run_peer(csv: Path, args) -> dict | None:
    """The fastai side in bench/.venv-peers: its JSON result, or None when it cannot run."""
    if not PEER_PY.exists():
        setup = subprocess.run(["bash", str(BENCH / "peers.sh"), sys.executable])
        if setup.returncode != 0:
            print("peer: bench/peers.sh failed; no fastai figures", file=sys.stderr)
            return None
    cmd = [str(PEER_PY), str(BENCH / "fastai_tabular_speed.py"), "--csv", str(csv), "--rows", str(args.rows),
           "--bs", str(args.bs), "--lr", str(args.lr), "--rounds", str(args.peer_rounds),
           "--threads", str(args.threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    env.pop("PYTHONPATH", None)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        print(f"peer: fastai_tabular_speed.py exited with {out.returncode}:\n{out.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--peer", action="store_true", help="also time fastai 2.8.12 (bench/.venv-peers)")
    p.add_argument("--rows", type=int, default=N_TRAIN, help="training rows (default 1,000,000)")
    p.add_argument("--bs", type=int, default=BS)
    p.add_argument("--lr", type=float, default=LR)
    p.add_argument("--rounds", type=int, default=3, help="timed epochs of plain and deftly, alternating")
    p.add_argument("--peer-rounds", type=int, default=1, help="timed fastai epochs")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import torch

    from deftly.datasets import URLs, untar_data
    from deftly.tabular import TabularModel, accuracy, tabular_learner

    torch.set_num_threads(args.threads)
    csv = untar_data(URLs.ADULT_SAMPLE, show_progress=False) / "adult.csv"
    df = make_frame(csv, args.rows)
    data, prep = deftly_side(df, args.bs)
    print(f"deftly: {len(data.train_ds):,} training rows processed into tensors in {prep:.2f} s", flush=True)

    torch.manual_seed(0)
    learn = tabular_learner(data, layers=LAYERS, metrics=accuracy)
    model = TabularModel(data.get_emb_szs(), len(data.cont_names), data.c, LAYERS)
    model.load_state_dict(learn.model.state_dict())
    train = (data.train_dl.dl.dataset.x, data.train_dl.dl.dataset.y)
    valid = (data.valid_dl.dl.dataset.x, data.valid_dl.dl.dataset.y)
    plain = PlainLoop(model, train, valid, args.bs, args.lr)

    times: dict[str, list[float]] = {"plain": [], "deftly": []}
    with open(os.devnull, "w") as sink:
        def deftly_epoch() -> None:
            with contextlib.redirect_stdout(sink):
                learn.fit(1, args.lr)

        variants = {"plain": plain.epoch, "deftly": deftly_epoch}
        for r in range(1 + args.rounds):  # round 0 warms up
            for name in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
                gc.collect()
                t0 = time.perf_counter()
                variants[name]()
                if r > 0:
                    times[name].append(time.perf_counter() - t0)
    t_plain, t_deftly = best(times["plain"]), best(times["deftly"])
    acc = learn.recorder.last_values.get("accuracy", float("nan")) if hasattr(learn.recorder, "last_values") else float("nan")
    print(f"plain: {t_plain:.2f} s/epoch (valid accuracy {plain.accuracy:.4f})", flush=True)
    print(f"deftly: {t_deftly:.2f} s/epoch (valid accuracy {float(acc):.4f})", flush=True)

    peer = run_peer(csv, args) if args.peer else None
    if peer is not None:
        print(f"fastai: {peer['train_rows']:,} training rows processed in {peer['prep_s']:.2f} s", flush=True)
        print(f"fastai: {min(peer['epoch_s']):.2f} s/epoch (valid accuracy {peer['accuracy']:.4f})", flush=True)
        print(f"tabular_speed_vs_fastai: {min(peer['epoch_s']) / t_deftly:.1f}", flush=True)
    print(f"tabular_overhead_vs_raw: {t_deftly / t_plain:.2f}", flush=True)
    return 0 if (peer is not None or not args.peer) else 1


if __name__ == "__main__":
    sys.exit(main())
