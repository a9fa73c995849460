"""Latency of `predict` on one image through an exported resnet34 at 224 px on the CPU: the bare
`model(x)`, deftly's `load_learner(...).predict(file)` and fastai 2.8.12's, on the same image file.

Image: a real photograph, scikit-image's `data.chelsea()` (a cat, 451x300), written once as a JPEG
(quality 95) that both sides open from disk. Model: resnet34 built with pretrained=False on both sides
(random weights; the two inits differ, which does not change the time), 224 px (resize + centre crop),
ImageNet normalisation. Each learner is built on a few real images (the bundled Pets-shaped sample
from `untar_data(URLs.PETS)`, labels from the file names; the same files for fastai), exported
(deftly: `learn.export()`, one zip of JSON and safetensors; fastai: `learn.export()`, a pickle) and
loaded back with `load_learner`, as a server would.

What is timed (wall clock, best and median of `--runs` rounds after `--warmup` untimed ones; the
parts of a round alternate so background load hits them alike):

    bare     model(x) under torch.inference_mode on the input already decoded, resized and normalised
    deftly   learn.predict('chelsea.jpg'): open, resize, normalise, forward, softmax, label
    fastai   learn.predict('chelsea.jpg') (bench/fastai_predict_latency.py, in bench/.venv-peers)

Threads: one intra-op and one inter-op thread on both sides (deftly through
`set_inference_threads(1)`; `--threads` changes the intra-op count of both).

`predict_overhead` is deftly's predict over the bare forward (best of each; goal <= 1.2);
`predict_speedup_vs_fastai` is fastai's predict over deftly's (best of each; goal >= 10). Both predicts
run the same forward pass, so the second ratio is bounded by (forward + fastai's own work) / forward:
the fastai lines show where fastai's time goes (building a test DataLoader, get_preds with its
callbacks and progress bar, decoding the input back to an image).

`--peer` adds the fastai side (bench/.venv-peers, made by bench/peers.sh); without it only deftly runs.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import tempfile
import warnings
from collections import defaultdict
from pathlib import Path

from timing import time_steps  # bench/timing.py: the script's folder is on sys.path

BENCH = Path(__file__).resolve().parent
PEER_PY = BENCH / ".venv-peers" / "bin" / "python"
PAT = r"([^/]+)_\d+\.jpg$"


def write_image(folder: Path) -> Path:
    """scikit-image's chelsea photograph as a JPEG file."""
    import PIL.Image
    from skimage import data

    file = folder / "chelsea.jpg"
    PIL.Image.fromarray(data.chelsea()).save(file, quality=95)
    return file


def training_files(per_label: int) -> tuple[Path, list[str]]:
    """The bundled pets sample's image folder and `per_label` file names of each label."""
    from deftly.datasets import URLs, untar_data

    folder = untar_data(URLs.PETS, show_progress=False) / "images"
    by_label: dict[str, list[str]] = defaultdict(list)
    for f in sorted(folder.glob("*.jpg")):
        label = re.search(PAT, str(f)).group(1)
        if len(by_label[label]) < per_label:
            by_label[label].append(f.name)
    return folder, [name for names in by_label.values() for name in names]


def ms(ts: list[float]) -> tuple[float, float]:
    return min(ts) * 1e3, statistics.median(ts) * 1e3


def run_deftly(image: Path, folder: Path, names: list[str], args: argparse.Namespace, tmp: Path) -> dict:
    """Export and reload a deftly resnet34 learner; time bare forward and predict."""
    import torch

    from deftly.core import cpu_has_bf16, set_seed
    from deftly.export import load_learner
    from deftly.vision import ImageDataBunch, cnn_learner, imagenet_stats, models

    set_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a label only in the validation split is dropped, said as a warning
        data = ImageDataBunch.from_name_re(folder, [folder / n for n in names], PAT, valid_pct=0.25, seed=0,
                                           size=args.size, bs=4, num_workers=0).normalize(imagenet_stats)
    learn = cnn_learner(data, models.resnet34, pretrained=False, progress=False)
    learn.path = tmp
    learn.export("export.pkl")
    learn = load_learner(tmp, "export.pkl")
    model = learn.model.eval()
    x = learn.data.one_item(str(image))[0]

    def bare() -> None:
        with torch.inference_mode():
            model(x)

    def predict() -> None:
        learn.predict(str(image))

    steps = {"bare": bare, "predict": predict}
    if cpu_has_bf16():  # an opt-in for CPUs with native bf16, reported beside the fp32 figures
        fast = load_learner(tmp, "export.pkl").to_bf16()
        steps["predict_bf16"] = lambda: fast.predict(str(image))
    times = time_steps(steps, args.warmup, args.runs)
    return {"times": times, "label": str(learn.predict(str(image))[0]), "input": list(x.shape)}


def run_fastai(image: Path, folder: Path, names: list[str], args: argparse.Namespace, tmp: Path) -> dict:
    """The same on fastai 2.8.12, in its own environment (bench/fastai_predict_latency.py)."""
    if not PEER_PY.exists():
        raise SystemExit(f"--peer needs {PEER_PY}: run `bash bench/peers.sh` first")
    listing = tmp / "files.txt"
    listing.write_text("\n".join(names) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    env.pop("PYTHONPATH", None)
    cmd = [str(PEER_PY), str(BENCH / "fastai_predict_latency.py"), "--image", str(image), "--folder", str(folder),
           "--files", str(listing), "--pat", PAT, "--size", str(args.size), "--runs", str(args.runs),
           "--warmup", str(args.warmup), "--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"the fastai peer failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--peer", action="store_true", help="also time fastai 2.8.12 (bench/.venv-peers)")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--per-label", type=int, default=8, help="training images per label (only to build the learner)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    from deftly.core import set_inference_threads

    threads = set_inference_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        image = write_image(tmp)
        folder, names = training_files(args.per_label)
        print(f"image: skimage chelsea 451x300 as JPEG; resnet34, {args.size} px, CPU; threads (intra, inter-op): "
              f"deftly {threads}, fastai ({args.threads}, 1); best / median of {args.runs} after {args.warmup} "
              "warm-up", flush=True)
        mine = run_deftly(image, folder, names, args, tmp)
        bare, pred = ms(mine["times"]["bare"]), ms(mine["times"]["predict"])
        print(f"bare model(x):   {bare[0]:7.2f} ms  (median {bare[1]:.2f})  input {mine['input']}")
        print(f"deftly predict:  {pred[0]:7.2f} ms  (median {pred[1]:.2f})  overhead {pred[0] - bare[0]:+.2f} ms",
              flush=True)
        fast = ms(mine["times"]["predict_bf16"]) if "predict_bf16" in mine["times"] else None
        if fast:
            print(f"deftly predict after learn.to_bf16() (this CPU has native bf16): {fast[0]:7.2f} ms "
                  f"(median {fast[1]:.2f})", flush=True)
        speedup = None
        if args.peer:
            theirs = run_fastai(image, folder, names, args, tmp)
            t = {k: ms(v) for k, v in theirs["times"].items()}
            fbare, fpred = t["bare"], t["predict"]
            print(f"fastai predict:  {fpred[0]:7.2f} ms  (median {fpred[1]:.2f})  overhead over its own bare "
                  f"model(x) ({fbare[0]:.2f} ms): {fpred[0] - fbare[0]:+.2f} ms")
            print(f"fastai parts:    test_dl {t['test_dl'][0]:.2f} ms, get_preds {t['get_preds'][0]:.2f} ms "
                  f"(its forward ~{fbare[0]:.2f}), decode_batch {t['decode'][0]:.2f} ms; predict in no_bar() "
                  f"{t['predict_no_bar'][0]:.2f} ms")
            over = (fpred[0] - fbare[0]) / max(pred[0] - bare[0], 1e-3)
            print(f"overhead beyond the forward: deftly {pred[0] - bare[0]:.2f} ms, "
                  f"fastai {fpred[0] - fbare[0]:.2f} ms ({over:.1f}x)")
            speedup = fpred[0] / pred[0]
            if fast:
                print(f"fastai predict / deftly bf16 predict: {fpred[0] / fast[0]:.1f} (informational; the goal "
                      "line below compares the fp32 defaults)")
    overhead = pred[0] / bare[0]
    print(f"predict_overhead: {overhead:.2f}")
    if speedup is not None:
        print(f"predict_speedup_vs_fastai: {speedup:.1f}")
    return overhead


if __name__ == "__main__":
    main()
