"""Training time and accuracy of a resnet18 from scratch on the Pets-shaped sample, deftly against
fastai 2.8.12: same data, split, size, batch size, augmentation, epochs and one-cycle schedule.

Data: the files and split of bench/vision_pipeline.py (the 5,000 bundled 28x28 JPEGs, 4,000 train /
1,000 valid by deftly's `valid_pct=0.2, seed=42` split, handed to fastai by file name), resized to
`--size` (64), `get_transforms()` / `aug_transforms()` with v1's defaults, imagenet_stats
normalisation, bs 64, `num_workers=0`.

    deftly   learn = cnn_learner(data, models.resnet18, pretrained=False, metrics=accuracy)
             learn.to_bf16()      # only where the CPU has native bf16 (see --precision)
             learn.fit_one_cycle(epochs, lr, pct_start=0.25, final_div=1e5)
    fastai   learn = vision_learner(dls, resnet18, pretrained=False, metrics=accuracy)
             learn.fit_one_cycle(epochs, lr)          # fp32, what users get by default

deftly's cnn_learner puts the model in channels_last itself. `pct_start` and `final_div` are
given to deftly so that its schedule is fastai's (v1's defaults are 0.3 and 25e4). With
pretrained=False neither library freezes the body, and fastai adds no normalisation of its own,
so both get imagenet_stats in their batch transforms. Both print their progress (to /dev/null,
as in bench/loop_overhead.py).

bf16: `--precision auto` (the default) uses `learn.to_bf16()` only when oneDNN reports native
bf16 support (`torch.ops.mkldnn._is_mkldnn_bf16_supported()`: AVX-512 or AMX). On an AVX2-only
CPU, bf16 autocast is emulated and a resnet18 training step is 13x slower than in fp32, so there
deftly trains in fp32 like fastai. The output says which precision deftly used.

Timing: one `fit_one_cycle` call (every epoch's training and validation) on a learner built just
before, untimed. The fastai side is a long-lived subprocess in bench/.venv-peers
(bench/fastai_vision_train.py), and the two fits alternate epoch by epoch: each side pauses at
the end of an epoch and hands over to the other (D1 F1 D2 F2 ...; fastai starts every second
round), so both meet about the same load on this shared 2-core machine. A side's time is its fit's wall time
minus its pauses; over several `--rounds`, the best. Its accuracy is the last epoch's validation
accuracy (the mean over rounds). Each round seeds both sides with `42 + round`, but the two
libraries draw weights and augmentations differently, so accuracies are comparable, not equal.
The last line is deftly's time over fastai's (the goal is <= 0.5 at equal or better accuracy):

    deftly: 147.3 s  accuracy 0.802 (0.802)  [fp32]
    fastai: 160.4 s  accuracy 0.794 (0.794)  [fp32]
    vision_train_time_ratio: 0.92
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vision_pipeline import (  # noqa: E402
    AUG, BS, PAT, SEED, Peer, deftly_data, deftly_files, ensure_peer_env, split_spec,
)

PCT_START = 0.25  # fastai 2.8.12's fit_one_cycle defaults
DIV = 25.0
DIV_FINAL = 1e5


class Alternation:
    """Hands the CPU to the fastai side between epochs, so the two fits alternate epoch by epoch:
    D1 F1 D2 F2 ... (or F1 D1 F2 D2 ...). Each side's time leaves out the time it waited."""

    def __init__(self, peer: Peer | None):
        self.peer = peer
        self.fastai: dict | None = None  # the fastai side's final answer, once its fit is done
        self.paused = 0.0

    def other_epoch(self) -> None:
        """Let the fastai side run its next epoch (or start its fit); wait until it pauses or ends."""
        if self.peer is None or self.fastai is not None:
            return
        t0 = time.perf_counter()
        answer = self.peer.ask({"cmd": "go"})
        self.paused += time.perf_counter() - t0
        if answer.get("done"):
            self.fastai = answer

    def finish(self) -> None:
        while self.peer is not None and self.fastai is None:
            self.other_epoch()


def deftly_fit(path_img: Path, fnames: list[Path], size: int, epochs: int, lr: float, seed: int,
               bf16: bool, sink, alt: Alternation, fastai_first: bool) -> dict:
    from deftly.train import Callback
    from deftly.vision import accuracy, cnn_learner, models, set_seed

    class AfterEachEpoch(Callback):
        order = 1000  # after the Recorder and the progress output

        def after_epoch(self) -> None:
            if self.state.epoch < self.state.n_epochs - 1:
                alt.other_epoch()

    set_seed(seed)
    data = deftly_data(path_img, fnames, size, 0)
    learn = cnn_learner(data, models.resnet18, pretrained=False, metrics=accuracy)
    if bf16:
        learn.to_bf16()
    n_params = sum(p.numel() for p in learn.model.parameters())
    gc.collect()
    if fastai_first:
        alt.other_epoch()
    paused0 = alt.paused
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sink):
        learn.fit_one_cycle(epochs, lr, div_factor=DIV, pct_start=PCT_START, final_div=DIV_FINAL,
                            callbacks=[AfterEachEpoch()])
    seconds = time.perf_counter() - t0 - (alt.paused - paused0)
    acc = float(learn.recorder.last_values["accuracy"])
    del learn, data
    gc.collect()
    return {"seconds": seconds, "accuracy": acc, "params": n_params}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer", action="store_true",
                        help="also train with fastai 2.8.12 (installs bench/.venv-peers)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-2, help="max lr of the one cycle (default 1e-2)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds, each training both sides once, epochs alternating (default 1: ~5 min)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides (default 1)")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="deftly's: auto = bf16 autocast when the CPU has native bf16 (oneDNN says so), else fp32")
    parser.add_argument("--files", type=int, default=None, help="only the first N files (a quick check)")
    parser.add_argument("--verbose", action="store_true", help="every round's figures")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from deftly.core import cpu_has_bf16

    bf16 = args.precision == "bf16" or (args.precision == "auto" and cpu_has_bf16())
    results: dict[str, list[dict]] = {"deftly": [], "fastai": []}
    tmp = tempfile.TemporaryDirectory(prefix="deftly-bench-")
    peer = None
    t_start = time.perf_counter()
    try:
        path_img, fnames = deftly_files(tmp.name)
        fnames = fnames[:args.files] if args.files else fnames
        if args.peer and ensure_peer_env():
            peer = Peer("fastai_vision_train.py", args.threads)
            spec = split_spec(deftly_data(path_img, fnames, args.size, 0))
            peer.ask({"cmd": "setup", **spec, "pat": PAT, "bs": BS, "aug": AUG})
        with open(os.devnull, "w") as sink:
            for r in range(args.rounds):
                fastai_first = peer is not None and r % 2 == 1
                alt = Alternation(peer)
                if peer is not None:  # fastai builds its learner, then waits for the first "go"
                    peer.ask({"cmd": "fit", "size": args.size, "epochs": args.epochs, "lr": args.lr,
                              "seed": SEED + r, "pct_start": PCT_START, "div": DIV, "div_final": DIV_FINAL})
                res = deftly_fit(path_img, fnames, args.size, args.epochs, args.lr, SEED + r, bf16, sink, alt,
                                 fastai_first)
                alt.finish()
                results["deftly"].append(res)
                if alt.fastai is not None:
                    results["fastai"].append(alt.fastai)
                if args.verbose:
                    for side in ("fastai", "deftly") if fastai_first else ("deftly", "fastai"):
                        if results[side]:
                            x = results[side][-1]
                            print(f"  round {r + 1} {side}: {x['seconds']:.1f} s  accuracy {x['accuracy']:.3f}  "
                                  f"({x['params']:,} parameters)", flush=True)
    finally:
        if peer is not None:
            peer.close()
        tmp.cleanup()

    best = {}
    for side, runs in results.items():
        if not runs:
            continue
        best[side] = min(x["seconds"] for x in runs)
        accs = [x["accuracy"] for x in runs]
        what = "bf16 autocast" if side == "deftly" and bf16 else "fp32"
        print(f"{side}: {best[side]:.1f} s  accuracy {statistics.mean(accs):.3f} "
              f"({' '.join(f'{a:.3f}' for a in accs)})  [{what}]", flush=True)
    print(f"(resnet18 from scratch, size {args.size}, bs {BS}, {args.epochs} epochs of one cycle at lr {args.lr:g}, "
          f"num_workers 0, {args.threads} torch thread(s); best time and mean accuracy of {args.rounds} "
          f"round(s), epochs alternating between the sides; {time.perf_counter() - t_start:.0f} s)", flush=True)
    if "fastai" not in best:
        return 0 if not args.peer else 1
    print(f"vision_train_time_ratio: {best['deftly'] / best['fastai']:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
