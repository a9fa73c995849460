"""The fastai side of bench/vision_pipeline.py: fastai 2.8.12's image DataLoaders, timed the same way.

Runs in bench/.venv-peers (made by bench/peers.sh) as a long-lived subprocess of
vision_pipeline.py, which sends one JSON request per line on stdin:

    {"cmd": "setup", "path": ..., "train": [names], "valid": [names], "pat": ..., "bs": 64, "aug": {...}}
    {"cmd": "measure", "size": 64, "workers": 0, "epochs": 1}   ->  {"times": [s, ...], "n": 3968}

The loaders are the DataBlock that `ImageDataLoaders.from_path_re(path, fnames, pat, ...)` builds
(ImageBlock, CategoryBlock, RegexLabeller on the whole path), with `FuncSplitter` naming the
validation files deftly drew instead of `RandomSplitter`, so both sides read the same 4,000
training files:

    item_tfms=Resize(size)
    batch_tfms=[*aug_transforms(size=size, max_warp=0.2, ...v1 defaults), Normalize.from_stats(*imagenet_stats)]

`bs=64`, `num_workers` as asked, `device='cpu'`; fastai's own worker_init sets one torch thread
per worker; `persistent_workers` is fastai's default (False) unless --persistent-workers.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vision_pipeline import serve, time_epochs  # noqa: E402

STATE: dict = {}


def build_dls(size: int, workers: int, bs: int | None = None, persistent: bool | None = None):
    """fastai 2.8.12 DataLoaders over the files and split of the last `setup`."""
    from fastai.vision.all import (
        CategoryBlock, DataBlock, FuncSplitter, ImageBlock, Normalize, RegexLabeller, Resize, aug_transforms,
        imagenet_stats,
    )

    s = STATE
    valid = set(s["valid"])
    aug = s["aug"]
    dblock = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        splitter=FuncSplitter(lambda o: o.name in valid),
        get_y=RegexLabeller(s["pat"]),
        item_tfms=Resize(size),
        batch_tfms=[*aug_transforms(size=size, do_flip=aug["do_flip"], flip_vert=aug["flip_vert"],
                                    max_rotate=aug["max_rotate"], max_zoom=aug["max_zoom"],
                                    max_lighting=aug["max_lighting"], max_warp=aug["max_warp"],
                                    p_affine=aug["p_affine"], p_lighting=aug["p_lighting"]),
                    Normalize.from_stats(*imagenet_stats)],
    )
    persistent = s["persistent"] if persistent is None else persistent
    extra = {"persistent_workers": True} if persistent and workers > 0 else {}
    return dblock.dataloaders(s["files"], path=s["path"], bs=bs or s["bs"], num_workers=workers, device="cpu",
                              **extra)


def setup(req: dict) -> dict:
    path = Path(req["path"])
    STATE.update(path=path, files=[path / n for n in req["train"] + req["valid"]], valid=req["valid"],
                 pat=req["pat"], bs=req["bs"], aug=req["aug"])
    return {"ok": True}


def measure(req: dict) -> dict:
    import gc

    dls = build_dls(req["size"], req["workers"])
    if len(dls.train_ds) != len(STATE["files"]) - len(STATE["valid"]):
        raise RuntimeError(f"fastai split has {len(dls.train_ds)} training items")
    try:
        times, n = time_epochs(dls.train, req["epochs"])
    finally:
        del dls
        gc.collect()
    return {"times": times, "n": n}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--persistent-workers", action="store_true")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")  # said on fastai's import
    import torch
    import fastai.vision.all  # noqa: F401  (the imports, paid before the first request is answered)

    torch.set_num_threads(args.threads)
    STATE["persistent"] = args.persistent_workers
    return serve({"setup": setup, "measure": measure})


if __name__ == "__main__":
    sys.exit(main())
