"""Lesson 2: SGD from scratch.

Fit a line y = a1*x + a2 to 100 noisy points with plain gradient descent:
make a guess for `a`, measure the mean squared error, let PyTorch compute the
gradient with `backward()`, and step `a` a little way downhill. Repeat 100 times.

    python examples/lesson2_sgd.py --out lesson2_sgd.png --seed 42
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write PNGs, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn, tensor  # noqa: E402


def mse(y_hat: Tensor, y: Tensor) -> Tensor:
    """Mean squared error: the average of the squared gaps between predictions and targets."""
    return ((y_hat - y) ** 2).mean()


def main(argv: list[str] | None = None) -> None:
    """Build the synthetic data, fit `a` with 100 SGD steps, save the plot and print the result."""
    parser = argparse.ArgumentParser(description="Lesson 2: SGD from scratch")
    parser.add_argument("--out", type=Path, default=Path("lesson2_sgd.png"), help="where to save the plot (PNG)")
    parser.add_argument("--seed", type=int, default=42, help="random seed for the data")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)

    # --- The data -------------------------------------------------------------
    # A column of random x values in [-1, 1), plus a column of 1s so that the
    # intercept is just a second coefficient: y = a1*x + a2*1 = x@a.
    n = 100
    x = torch.ones(n, 2)
    x[:, 0].uniform_(-1.0, 1)  # the trailing _ means "in place"
    print(x[:5])

    # (The course's fastai `tensor(3., 2)` takes the numbers directly; torch.tensor wants a list.)
    a = tensor([3.0, 2.0])  # the true slope and intercept, which we then pretend not to know
    # As in the lesson, the noise is torch.rand(n), uniform in [0, 1): its mean of 0.5
    # lifts the best line's intercept to about 2.5, so the fit lands near a = (3, 2.5).
    y = x @ a + torch.rand(n)

    # --- A first guess ------------------------------------------------------------
    a = nn.Parameter(tensor([-1.0, 1.0]))  # requires_grad=True: PyTorch tracks gradients for it
    print(f"initial guess a={a.tolist()}  loss={mse(x @ a, y).item():.4f}")

    # --- Gradient descent -----------------------------------------------------------
    lr = 1e-1
    losses: list[float] = []

    def update(t: int) -> None:
        """One step: predict, measure the loss, get the gradient, move `a` against it."""
        y_hat = x @ a
        loss = mse(y_hat, y)
        if t % 10 == 0:
            print(f"step {t:3d}  loss {loss.item():.4f}")
            losses.append(loss.item())
        loss.backward()  # fills a.grad with d(loss)/d(a)
        with torch.no_grad():  # the update itself must not be tracked
            a.sub_(lr * a.grad)
            a.grad.zero_()  # gradients accumulate unless we reset them

    for t in range(100):
        update(t)

    final_loss = mse(x @ a, y).item()

    # --- Plot the data and the fitted line -------------------------------------------
    with torch.no_grad():
        order = x[:, 0].argsort()
        fitted = (x @ a)[order]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(x[:, 0], y, s=12, c="orange", label="data")
    ax.plot(x[order, 0], fitted, label=f"fit: y = {a[0].item():.2f}x + {a[1].item():.2f}")
    ax.set(xlabel="x", ylabel="y", title="Lesson 2: SGD from scratch")
    ax.legend()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100, bbox_inches="tight")
    plt.close(fig)
    print(f"saved plot to {args.out}")

    a1, a2 = a.tolist()
    print(f"lesson2_sgd: a=[{a1:.2f}, {a2:.2f}] loss={final_loss:.4f}")


if __name__ == "__main__":
    main()
