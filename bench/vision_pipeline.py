"""Images per second through the vision input pipeline: decode + augment + collate, deftly against
fastai 2.8.12, on the same files with the same augmentation.

The data is the bundled Pets-shaped sample (`untar_data(URLs.PETS)` with DEFTLY_OFFLINE=1: 5,000
28x28 JPEGs `images/<Class>_<n>.jpg`), extracted into a private temporary folder (so that a
refresh of the shared data folder cannot pull the files away mid-run) and split 4,000/1,000 once by
deftly (`valid_pct=0.2`, seed 42). fastai gets the same validation file names, so both sides read
the same 4,000 training files: 62 batches of 64 per epoch (both drop the last partial batch).

deftly (what lesson 1 writes):

    ImageDataBunch.from_name_re(path_img, fnames, r'/([^/]+)_\d+.jpg$', ds_tfms=get_transforms(),
                                size=S, bs=64, num_workers=W).normalize(imagenet_stats)

per item (in the workers when W > 0): decode (simplejpeg for JPEGs), random crop + resize to S
(`ItemResize`), lighting table, uint8 tensor; collate; then per batch in the main process: one
grid_sample for flip/rotate/zoom/warp (`BatchAugment`), Normalize in place.

fastai 2.8.12 (bench/fastai_vision_pipeline.py, in bench/.venv-peers): the DataBlock that
`ImageDataLoaders.from_path_re` builds, with the same regular expression and a splitter that
names the same validation files,

    item_tfms=Resize(S), batch_tfms=[*aug_transforms(size=S, max_warp=0.2), Normalize.from_stats(*imagenet_stats)]

per item: PILImage.create, Resize (random crop in training), ToTensor; collate; per batch:
IntToFloatTensor, Flip + Warp + Rotate + Zoom (one grid_sample), Brightness + Contrast, Normalize.
Both use v1's defaults: flip p=0.5, rotate 10 deg, zoom 1.1, warp 0.2, lighting 0.2, p_affine and
p_lighting 0.75, reflection padding, bilinear.

What is timed: whole epochs of `data.train_dl` / `dls.train`, every batch taken out of the
iterator (nothing else is done with it). Per configuration (size, num_workers) each side builds its
loaders, takes 3 untimed batches (workers start, caches fill), then times `--epochs` whole epochs.
The fastai side is a long-lived subprocess that takes requests, so the two sides alternate
configuration by configuration and round by round (which side goes first alternates too). A
side's figure for a configuration is images per epoch / its best epoch time over all rounds.
Torch runs one thread in every process (`torch.set_num_threads(1)` in the main processes; both
libraries' worker_init set 1 per worker). Each library keeps its own DataLoader defaults: deftly's
workers are persistent, fastai's are not (`--fastai-persistent-workers` changes that).

Output, one line per configuration, then the geometric mean of deftly/fastai over the sizes for
each num_workers; the last line is that mean for the first `--workers` value (0 by default: the
work each library does per image, in one process, without the 2-core contention that workers
meet on this machine):

    size 64 workers 0: deftly 1744 img/s  fastai 696 img/s  ratio 2.51
    ...
    vision_pipeline_ratio: 2.27

This file imports nothing from deftly at module level: bench/fastai_vision_pipeline.py and
bench/vision_train.py import the shared settings and the peer protocol from it.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

BENCH = Path(__file__).resolve().parent
PEER_PY = BENCH / ".venv-peers" / "bin" / "python"
BS = 64
SEED = 42
VALID_PCT = 0.2
PAT = r"/([^/]+)_\d+.jpg$"  # lesson 1's pattern, on the whole path (deftly's from_name_re, fastai's from_path_re)
#: v1's get_transforms() defaults, which fastai 2.8.12's aug_transforms() shares.
AUG = dict(do_flip=True, flip_vert=False, max_rotate=10.0, max_zoom=1.1, max_lighting=0.2, max_warp=0.2,
           p_affine=0.75, p_lighting=0.75)


# --- the peer protocol: one JSON request per line on stdin, one JSON answer per line on stdout ----
class Peer:
    """The fastai side as a long-lived subprocess in bench/.venv-peers (imports paid once)."""

    def __init__(self, script: str, threads: int, extra: list[str] | None = None):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        env.pop("PYTHONPATH", None)
        cmd = [str(PEER_PY), str(BENCH / script), "--threads", str(threads), *(extra or [])]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.ask({"cmd": "ping"})  # waits for the imports

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fastai peer exited ({self.proc.wait()}) while answering {request.get('cmd')}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"fastai peer: {answer['error']}")
        return answer

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.stdin.close()  # the peer's loop ends at end of input
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_ANSWERS = sys.stdout  # where the peer's answers go (its stdout; set again by serve)


def reply(answer: dict[str, Any]) -> None:
    """Send one answer line to the driver (also used mid-request, e.g. after each epoch)."""
    _ANSWERS.write(json.dumps(answer) + "\n")
    _ANSWERS.flush()


def next_request() -> dict[str, Any] | None:
    """The driver's next request line, or None when it closed the pipe."""
    line = sys.stdin.readline()
    return json.loads(line) if line else None


def serve(handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]]) -> int:
    """The peer's loop (run in bench/.venv-peers): answer each request line with one JSON line.
    Anything the libraries print goes to stderr, so stdout carries only the answers."""
    global _ANSWERS
    _ANSWERS = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        while (request := next_request()) is not None:
            cmd = request.get("cmd")
            try:
                answer = {"ok": True} if cmd == "ping" else handlers[cmd](request)
            except Exception as e:  # reported to the driver, which stops
                import traceback
                traceback.print_exc()
                answer = {"error": f"{type(e).__name__}: {e}"}
            reply(answer)
    return 0


def ensure_peer_env() -> bool:
    """bench/peers.sh: make bench/.venv-peers (fastai 2.8.12) if it is not there yet."""
    sys.stdout.flush()
    setup = subprocess.run(["bash", str(BENCH / "peers.sh"), sys.executable])
    if setup.returncode != 0:
        print("peer: bench/peers.sh failed; no fastai figures", file=sys.stderr)
        return False
    return True


def time_epochs(dl, epochs: int, warmup_batches: int = 3) -> tuple[list[float], int]:
    """Take `warmup_batches` batches (untimed: starts workers, fills caches), then iterate `dl` for
    `epochs` whole epochs; the seconds of each and the images per epoch. Garbage is collected
    before each epoch, outside the timing."""
    for i, _ in enumerate(dl):
        if i + 1 >= warmup_batches:
            break
    times, n = [], 0
    for _ in range(epochs):
        gc.collect()
        n = 0
        t0 = time.perf_counter()
        for x, _ in dl:
            n += len(x)
        times.append(time.perf_counter() - t0)
    return times, n


def geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


# --- deftly ------------------------------------------------------------------------------------
def deftly_files(dest: str | os.PathLike) -> tuple[Path, list[Path]]:
    """The bundled sample extracted under `dest` (a private folder: tests or other runs may remove
    or re-extract the shared data folder meanwhile): (path/'images', its JPEGs)."""
    os.environ.setdefault("DEFTLY_OFFLINE", "1")  # never download the real 800 MB Pets
    from deftly.vision import URLs, get_image_files, untar_data

    path_img = untar_data(URLs.PETS, dest=dest) / "images"
    return path_img, get_image_files(path_img)


def deftly_data(path_img: Path, fnames: list[Path], size: int, workers: int, bs: int = BS):
    from deftly.vision import ImageDataBunch, get_transforms, imagenet_stats

    return ImageDataBunch.from_name_re(path_img, fnames, PAT, valid_pct=VALID_PCT, seed=SEED,
                                       ds_tfms=get_transforms(**AUG), size=size, bs=bs,
                                       num_workers=workers).normalize(imagenet_stats)


def split_spec(data) -> dict[str, Any]:
    """What the fastai side needs to read the same files with the same split."""
    valid = sorted(Path(f).name for f in data.valid_ds.x.items)
    train = sorted(Path(f).name for f in data.train_ds.x.items)
    return {"path": str(Path(data.train_ds.x.items[0]).parent), "valid": valid, "train": train}


def measure_deftly(path_img: Path, fnames: list[Path], size: int, workers: int, epochs: int) -> tuple[list[float], int]:
    data = deftly_data(path_img, fnames, size, workers)
    try:
        return time_epochs(data.train_dl, epochs)
    finally:
        del data  # stops persistent workers
        gc.collect()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer", action="store_true", help="also measure fastai 2.8.12 (installs bench/.venv-peers)")
    parser.add_argument("--sizes", default="64,128", help="comma-separated image sizes")
    parser.add_argument("--workers", default="0,2",
                        help="comma-separated num_workers values; the last line is for the first one")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per configuration per round (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each main process (default 1)")
    parser.add_argument("--fastai-persistent-workers", action="store_true",
                        help="pass persistent_workers=True to fastai's loaders (deftly's are always persistent)")
    parser.add_argument("--files", type=int, default=None, help="only the first N files (a quick check)")
    parser.add_argument("--verbose", action="store_true", help="every epoch's time")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    workers = [int(w) for w in args.workers.split(",") if w]
    configs = [(s, w) for w in workers for s in sizes]

    import torch

    torch.set_num_threads(args.threads)
    times: dict[tuple[str, int, int], list[float]] = {}
    per_epoch: dict[tuple[str, int, int], int] = {}
    tmp = tempfile.TemporaryDirectory(prefix="deftly-bench-")
    peer = None
    t_start = time.perf_counter()
    try:
        path_img, fnames = deftly_files(tmp.name)
        fnames = fnames[:args.files] if args.files else fnames
        if args.peer and ensure_peer_env():
            extra = ["--persistent-workers"] if args.fastai_persistent_workers else []
            peer = Peer("fastai_vision_pipeline.py", args.threads, extra)
            spec = split_spec(deftly_data(path_img, fnames, sizes[0], 0))
            peer.ask({"cmd": "setup", **spec, "pat": PAT, "bs": BS, "aug": AUG})
        for r in range(args.rounds):
            for i, (size, w) in enumerate(configs):
                sides = ["deftly", "fastai"] if peer is not None else ["deftly"]
                if (r + i) % 2:
                    sides.reverse()
                for side in sides:
                    if side == "deftly":
                        ts, n = measure_deftly(path_img, fnames, size, w, args.epochs)
                    else:
                        a = peer.ask({"cmd": "measure", "size": size, "workers": w, "epochs": args.epochs})
                        ts, n = a["times"], a["n"]
                    times.setdefault((side, size, w), []).extend(ts)
                    per_epoch[(side, size, w)] = n
    finally:
        if peer is not None:
            peer.close()
        tmp.cleanup()

    ratios: dict[int, list[float]] = {}
    for size, w in configs:
        best = {side: per_epoch[(side, size, w)] / min(times[(side, size, w)])
                for side in ("deftly", "fastai") if (side, size, w) in times}
        line = f"size {size} workers {w}: deftly {best['deftly']:.0f} img/s"
        if "fastai" in best:
            if per_epoch[("fastai", size, w)] != per_epoch[("deftly", size, w)]:
                print(f"warning: images per epoch differ: {per_epoch}", file=sys.stderr)
            ratio = best["deftly"] / best["fastai"]
            ratios.setdefault(w, []).append(ratio)
            line += f"  fastai {best['fastai']:.0f} img/s  ratio {ratio:.2f}"
        print(line, flush=True)
        if args.verbose:
            for side in best:
                print(f"  {side}: " + " ".join(f"{t:.3f}" for t in times[(side, size, w)]) + " s/epoch")
    n_epochs = len(next(iter(times.values())))
    print(f"(best of {n_epochs} epochs per side and configuration: {args.rounds} interleaved rounds x "
          f"{args.epochs} epochs of {per_epoch[('deftly', *configs[0])]} images, bs {BS}, "
          f"{args.threads} torch thread(s) per process; {time.perf_counter() - t_start:.0f} s)", flush=True)
    if not ratios:
        return 0 if not args.peer else 1
    for w in workers:
        print(f"vision_pipeline_ratio_workers{w}: {geomean(ratios[w]):.2f}", flush=True)
    print(f"vision_pipeline_ratio: {geomean(ratios[workers[0]]):.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
