"""How much slower is `Learner.fit` than a plain PyTorch loop doing the same work?

Two models on the bundled MNIST sample (8,000 train + 2,000 valid digits, bs 64, num_workers=0,
a torch DataLoader over a TensorDataset on both sides, the training one shuffling and dropping
its last partial batch): `nn.Linear(784, 10)`, where the loop's own cost is nearly all there is,
and the small CNN of the course (4 stride-2 conv-BN-ReLU blocks 1->8->16->32->16, a conv to 10
classes, flatten). Both sides use `torch.optim.AdamW(betas=(0.9, 0.99), weight_decay=0.01)` at a
constant learning rate, cross-entropy, and compute the validation loss and accuracy every epoch.

The plain loop is what a careful user writes: train (forward, loss, backward, step, zero_grad,
`loss.item()` kept), then validate under `torch.no_grad()`, then print one line. deftly runs
`learn.fit(1, lr)` with the Learner's default callbacks (Recorder, TerminateOnNaN and the
progress output, which goes to a non-terminal sink, /dev/null, so it writes plain lines).

Timing: one epoch of each variant in turn (plain, deftly, deftly, plain, ...), after a warm-up
round; each variant's best (minimum) epoch time is its cost, and the ratio is deftly / plain.
The last line is the worse of the two ratios:

    linear: plain 0.126 s/epoch  deftly 0.134 s/epoch  ratio 1.06
    cnn: plain 1.115 s/epoch  deftly 1.117 s/epoch  ratio 1.00
    loop_overhead_ratio: 1.06

With `--peer`, bench/peers.sh first makes bench/.venv-peers (fastai 2.8.12 beside the same torch),
then bench/fastai_loop_overhead.py measures fastai's Learner the same way in that environment and
prints its own line per model and `fastai_linear_ratio` / `fastai_cnn_ratio` before the last line.
See bench/README.md for the settings and the numbers.

This file imports nothing from deftly at module level: the fastai script imports its plain loop,
models and timing from here, in an environment that has no deftly.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

BENCH = Path(__file__).resolve().parent
BS = 64
LR = 1e-3
BETAS = (0.9, 0.99)
WD = 0.01
MODELS = ("linear", "cnn")
DEFAULT_ROUNDS = {"linear": 40, "cnn": 16}


# --- the shared setup (also used by fastai_loop_overhead.py) ---------------------------------
def make_model(name: str, seed: int = 0) -> nn.Module:
    """The two benchmark models, with the same initial weights every time."""
    torch.manual_seed(seed)
    if name == "linear":
        return nn.Linear(784, 10)

    def block(ni: int, nf: int) -> list[nn.Module]:
        return [nn.Conv2d(ni, nf, 3, stride=2, padding=1), nn.BatchNorm2d(nf), nn.ReLU()]

    return nn.Sequential(*block(1, 8), *block(8, 16), *block(16, 32), *block(32, 16),  # 28->14->7->4->2
                         nn.Conv2d(16, 10, 3, stride=2, padding=1), nn.Flatten())    # 2->1, 10 classes


def datasets(name: str, train: tuple[torch.Tensor, torch.Tensor],
             valid: tuple[torch.Tensor, torch.Tensor]) -> tuple[TensorDataset, TensorDataset]:
    """TensorDatasets of (n, 784) inputs for the linear model, (n, 1, 28, 28) for the CNN."""
    shape = (-1, 784) if name == "linear" else (-1, 1, 28, 28)
    return (TensorDataset(train[0].reshape(shape), train[1]),
            TensorDataset(valid[0].reshape(shape), valid[1]))


def plain_loaders(train_ds: TensorDataset, valid_ds: TensorDataset) -> tuple[DataLoader, DataLoader]:
    """The DataLoaders a DataBunch makes: training shuffles and drops the last partial batch."""
    return (DataLoader(train_ds, BS, shuffle=True, drop_last=True, num_workers=0),
            DataLoader(valid_ds, BS, shuffle=False, num_workers=0))


class PlainLoop:
    """A careful user's training loop: one call of `epoch()` trains, validates and prints a line."""

    def __init__(self, model: nn.Module, train_ds: TensorDataset, valid_ds: TensorDataset,
                 lr: float = LR, out=None):
        self.model = model
        self.train_dl, self.valid_dl = plain_loaders(train_ds, valid_ds)
        self.opt = torch.optim.AdamW(model.parameters(), lr, betas=BETAS, weight_decay=WD)
        self.loss_func = nn.CrossEntropyLoss()
        self.out = out if out is not None else sys.stdout
        self.n_epochs = 0
        self.accuracy = float("nan")

    def epoch(self) -> None:
        model, opt, loss_func = self.model, self.opt, self.loss_func
        model.train()
        losses = []
        for xb, yb in self.train_dl:
            loss = loss_func(model(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(loss.item())
        model.eval()
        total_loss, correct, count = 0.0, 0, 0
        with torch.no_grad():
            for xb, yb in self.valid_dl:
                pred = model(xb)
                total_loss += loss_func(pred, yb).item() * len(yb)
                correct += (pred.argmax(dim=1) == yb).sum().item()
                count += len(yb)
        self.n_epochs += 1
        self.accuracy = correct / count
        print(f"{self.n_epochs}  {sum(losses) / len(losses):.6f}  {total_loss / count:.6f}  {self.accuracy:.6f}",
              file=self.out, flush=True)


def interleave(variants: dict[str, Callable[[], None]], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Run one epoch of each variant per round, alternating which goes first; the epoch times
    after `warmup` rounds, per variant. Garbage is collected before each epoch, outside the timing."""
    times: dict[str, list[float]] = {k: [] for k in variants}
    names = list(variants)
    for r in range(warmup + rounds):
        for k in (names if r % 2 == 0 else names[::-1]):
            gc.collect()
            t0 = time.perf_counter()
            variants[k]()
            dt = time.perf_counter() - t0
            if r >= warmup:
                times[k].append(dt)
    return times


def summary_line(label: str, base: str, other: str, times: dict[str, list[float]]) -> tuple[str, float]:
    """`label: plain 0.152 s/epoch  deftly 0.154 s/epoch  ratio 1.01` from the best epochs."""
    b, o = min(times[base]), min(times[other])
    ratio = o / b
    return f"{label}: {base} {b:.3f} s/epoch  {other} {o:.3f} s/epoch  ratio {ratio:.2f}", ratio


def detail_line(label: str, times: dict[str, list[float]]) -> str:
    """Medians and counts, for --verbose."""
    parts = [f"{k} median {statistics.median(v):.3f} best {min(v):.3f} (n={len(v)})" for k, v in times.items()]
    return f"  {label}: " + "  ".join(parts)


def set_threads(n: int) -> None:
    torch.set_num_threads(n)


# --- deftly ------------------------------------------------------------------------------------
def deftly_epoch_fn(model: nn.Module, train_ds: TensorDataset, valid_ds: TensorDataset, sink,
                    progress: bool = True, lr: float = LR):
    """A Learner with its default callbacks; each call is `learn.fit(1, lr)` with stdout -> sink."""
    from deftly.data import DataBunch
    from deftly.train import Learner, accuracy

    data = DataBunch.create(train_ds, valid_ds, bs=BS, num_workers=0, device="cpu")
    learn = Learner(data, model, loss_func=nn.CrossEntropyLoss(), metrics=accuracy, progress=progress)

    def run() -> None:
        with contextlib.redirect_stdout(sink):
            learn.fit(1, lr)

    return run, learn


def measure_deftly(name: str, train, valid, rounds: int, sink, progress: bool, verbose: bool) -> float:
    train_ds, valid_ds = datasets(name, train, valid)
    model = make_model(name)
    plain = PlainLoop(copy.deepcopy(model), train_ds, valid_ds, out=sink)
    run, learn = deftly_epoch_fn(copy.deepcopy(model), train_ds, valid_ds, sink, progress)
    times = interleave({"plain": plain.epoch, "deftly": run}, rounds)
    line, ratio = summary_line(name, "plain", "deftly", times)
    print(line, flush=True)
    if verbose:
        print(detail_line(name, times))
        acc = learn.recorder.last_values.get("accuracy")
        print(f"  {name}: valid accuracy after {plain.n_epochs} epochs: plain {plain.accuracy:.4f}  "
              f"deftly {acc:.4f}", flush=True)
    return ratio


# --- the fastai peer ---------------------------------------------------------------------------
def run_peer(train, valid, args) -> bool:
    """Make bench/.venv-peers if needed, then run the fastai side there; its lines go to stdout."""
    import numpy as np

    sys.stdout.flush()
    t0 = time.perf_counter()
    setup = subprocess.run(["bash", str(BENCH / "peers.sh"), sys.executable])
    if setup.returncode != 0:
        print("peer: bench/peers.sh failed; no fastai figures", file=sys.stderr)
        return False
    if args.verbose:
        print(f"  peer env ready in {time.perf_counter() - t0:.1f} s", flush=True)
    peer_py = BENCH / ".venv-peers" / "bin" / "python"
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "mnist_sample.npz"
        np.savez(npz, x_train=train[0].numpy(), y_train=train[1].numpy(),
                 x_valid=valid[0].numpy(), y_valid=valid[1].numpy())
        cmd = [str(peer_py), str(BENCH / "fastai_loop_overhead.py"), "--data", str(npz),
               "--threads", str(args.threads), "--rounds-linear", str(args.rounds_linear),
               "--rounds-cnn", str(args.rounds_cnn)]
        cmd += ["--no-progress"] if args.no_progress else []
        cmd += ["--verbose"] if args.verbose else []
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        env.pop("PYTHONPATH", None)
        proc = subprocess.run(cmd, env=env)
    if proc.returncode != 0:
        print(f"peer: {' '.join(cmd[:2])} exited with {proc.returncode}; no fastai figures", file=sys.stderr)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer", action="store_true", help="also measure fastai 2.8.12 (installs bench/.venv-peers)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, the same for every variant (default 1)")
    parser.add_argument("--rounds-linear", type=int, default=DEFAULT_ROUNDS["linear"], help="timed epochs per variant")
    parser.add_argument("--rounds-cnn", type=int, default=DEFAULT_ROUNDS["cnn"], help="timed epochs per variant")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of linear,cnn")
    parser.add_argument("--no-progress", action="store_true", help="Learner(progress=False) (and fastai's no_bar/no_logging)")
    parser.add_argument("--show-progress", action="store_true", help="progress and plain-loop lines to stdout, not /dev/null")
    parser.add_argument("--verbose", action="store_true", help="medians, counts and final accuracies")
    args = parser.parse_args(argv)

    from deftly.datasets import load_mnist_sample

    set_threads(args.threads)
    train, valid = load_mnist_sample()  # 8000 + 2000, x float32 (n, 784), y int64
    rounds = {"linear": args.rounds_linear, "cnn": args.rounds_cnn}
    models = [m for m in args.models.split(",") if m]
    unknown = set(models) - set(MODELS)
    if unknown:
        parser.error(f"unknown models {sorted(unknown)}; choose from {MODELS}")

    ratios = []
    with contextlib.ExitStack() as stack:
        sink = sys.stdout if args.show_progress else stack.enter_context(open(os.devnull, "w"))
        for name in models:
            ratios.append(measure_deftly(name, train, valid, rounds[name], sink, not args.no_progress, args.verbose))
    ok = run_peer(train, valid, args) if args.peer else True
    print(f"loop_overhead_ratio: {max(ratios):.2f}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
