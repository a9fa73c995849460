"""A training run for the kill-and-resume test: 3 epochs of one-cycle on real MNIST digits,
with dropout (so random state matters), a CSV log and crash-safe checkpoints.

    python resume_job.py WORKDIR [--slow SECONDS]

Prints `batch E I` after each training batch (so a test can kill it mid-epoch), `resumed E` if
it continued an earlier run, and `done` at the end; the final weights go to WORKDIR/models/final.
"""
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

from deftly.basics import Callback, CSVLogger, DataBunch, Learner, ResumeCallback, accuracy, set_seed
from deftly.datasets import load_mnist_sample


class Announce(Callback):
    """Tells the parent test where training is; optionally slows each batch down."""

    def __init__(self, delay: float):
        super().__init__()
        self.delay = delay

    def after_batch(self):
        if self.state.training:
            print(f"batch {self.state.epoch} {self.state.iter}", flush=True)
            time.sleep(self.delay)


def main() -> None:
    workdir = Path(sys.argv[1])
    delay = float(sys.argv[sys.argv.index("--slow") + 1]) if "--slow" in sys.argv else 0.0
    torch.set_num_threads(1)
    set_seed(0)
    (x_train, y_train), (x_valid, y_valid) = load_mnist_sample(n_valid=500)
    data = DataBunch.create(TensorDataset(x_train[:1500], y_train[:1500]), TensorDataset(x_valid, y_valid), bs=50)
    model = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.3), nn.Linear(64, 10))
    resume = ResumeCallback(name="run")
    learn = Learner(data, model, loss_func=nn.CrossEntropyLoss(), metrics=accuracy, path=workdir,
                    progress=False, callbacks=[resume, Announce(delay)], callback_fns=[CSVLogger])
    learn.fit_one_cycle(3, 1e-2)
    if getattr(resume, "resumed_from", None) is not None:
        print(f"resumed {resume.resumed_from}", flush=True)
    learn.save("final")
    print("done", flush=True)


if __name__ == "__main__":
    main()
