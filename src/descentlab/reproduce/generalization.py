"""Adam finds a good solution fast; SGD with momentum sometimes generalizes better."""

from __future__ import annotations

import numpy as np
import torch

from .. import torch as dt
from .base import Claim, Context, Criterion, Measurement
from .common import best, lab_runs, metric, pyplot, save_figure, steps_to


def wilson_data(n: int, dim: int, rng: np.random.Generator, offset: int):
    """Wilson et al. (2017), section 3.3: x1 = y, x2 = x3 = 1, then features unique to each
    sample (one when y = 1, five when y = -1); labels positive with probability 5/8."""
    y = np.where(rng.random(n) < 5 / 8, 1.0, -1.0)
    x = np.zeros((n, dim))
    x[:, 0], x[:, 1], x[:, 2] = y, 1.0, 1.0
    for i in range(n):
        j = 3 + 5 * (offset + i)
        x[i, j : j + (1 if y[i] > 0 else 5)] = 1.0
    return torch.from_numpy(x), torch.from_numpy(y)


def _wilson(cls: type, lrs: tuple[float, ...], steps: int, seed: int) -> tuple[float, float, float]:
    """(train loss, train acc, test acc) at the lr with the lowest training loss."""
    rng = np.random.default_rng(seed)
    n, m = 40, 400
    dim = 3 + 5 * (n + m)
    x, y = wilson_data(n, dim, rng, 0)
    xt, yt = wilson_data(m, dim, rng, n)
    results = []
    for lr in lrs:
        w = torch.zeros(dim, dtype=torch.float64, requires_grad=True)
        opt = cls([w], lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            loss = 0.5 * ((x @ w - y) ** 2).mean()
            loss.backward()
            opt.step()
        with torch.no_grad():
            results.append(
                (
                    float(0.5 * ((x @ w - y) ** 2).mean()),
                    float(((x @ w).sign() == y).double().mean()),
                    float(((xt @ w).sign() == yt).double().mean()),
                )
            )
    return min(results)


def measure(ctx: Context) -> Measurement:
    fig: dict[str, float] = {}
    steps = 1000 if ctx.quick else 3000
    for name, cls, lrs in (
        ("SGD", dt.SGD, (1e-3, 1e-2, 1e-1)),
        ("Adam", dt.Adam, (1e-4, 1e-3, 1e-2)),
    ):
        accs = [_wilson(cls, lrs, steps, seed) for seed in range(max(ctx.seeds, 2))]
        fig[f"Wilson {name}: train loss"] = float(np.mean([a[0] for a in accs]))
        fig[f"Wilson {name}: train accuracy"] = float(np.mean([a[1] for a in accs]))
        fig[f"Wilson {name}: test accuracy"] = float(np.mean([a[2] for a in accs]))

    epochs = 4 if ctx.quick else 20
    target = 1.0 if ctx.quick else 0.5
    fig["CNN target training loss"] = target
    grids = {
        "sgd:momentum=0.9": (1e-2, 3e-2, 1e-1) if ctx.quick else (3e-3, 1e-2, 3e-2, 1e-1),
        "adam": (1e-3, 3e-3, 1e-2) if ctx.quick else (3e-4, 1e-3, 3e-3, 1e-2),
    }
    curves = {}
    for opt, grid in grids.items():
        by_lr = lab_runs("mnist1d-cnn", opt, grid, ctx.seeds, "minibatch:64", epochs=epochs)
        lr, runs = best(by_lr)
        label = "SGD+momentum" if opt.startswith("sgd") else "Adam"
        fig[f"CNN {label}: best lr (train loss)"] = lr
        fig[f"CNN {label}: steps to target"] = steps_to(runs, target)
        test = {k: metric(v, "test_acc", "max") for k, v in by_lr.items()}
        fig[f"CNN {label}: best test accuracy over the grid"] = max(test.values())
        curves[label] = runs[0]
    plt = pyplot()
    f, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, run in curves.items():
        st = [e["step"] for e in run["evals"]]
        axes[0].plot(st, [e["train_loss"] for e in run["evals"]], label=label)
        axes[1].plot(st, [e.get("test_acc", np.nan) for e in run["evals"]], label=label)
    axes[0].axhline(target, color="grey", linestyle=":")
    axes[0].set_ylabel("training loss")
    axes[1].set_ylabel("held-out accuracy")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    f.suptitle(f"1-D CNN on MNIST-1D, {epochs} epochs, best lr each (seed 0)", fontsize=10)
    path = save_figure(ctx, f, "adam-vs-sgd")
    return Measurement(
        fig,
        [("Adam vs SGD with momentum on MNIST-1D", path)],
        remarks=[
            "Wilson et al.'s problem: 40 training samples, least squares on a linear model from "
            "zero, 400 fresh test samples whose unique features were never seen; each optimizer at "
            "its best of three lrs by training loss."
        ],
    )


CLAIM = Claim(
    key="adam-vs-sgd",
    title="Adam is fast; SGD with momentum sometimes generalizes better",
    quote=(
        "SGD with momentum sometimes generalizes better than Adam on vision tasks. Adam "
        "finds a good solution fast; SGD often finds a flatter, more generalizable minimum "
        "given enough time."
    ),
    experiment=(
        "Wilson et al. (2017)'s constructed separable problem, and a small 1-D CNN on "
        "MNIST-1D with the same tuning effort for Adam and SGD+momentum (the same "
        "number of learning rates, the same epochs)."
    ),
    criteria=(
        Criterion(
            "on Wilson et al.'s problem both fit the training set, and SGD's test "
            "accuracy beats Adam's by at least 10 points",
            lambda f: (
                f["Wilson SGD: train accuracy"] == 1.0
                and f["Wilson Adam: train accuracy"] == 1.0
                and f["Wilson SGD: test accuracy"] >= f["Wilson Adam: test accuracy"] + 0.1
            ),
        ),
        Criterion(
            "on the CNN, Adam reaches the training-loss target (1.0 with --quick, 0.5 in "
            "the full run) in fewer steps than SGD+momentum",
            lambda f: f["CNN Adam: steps to target"] < f["CNN SGD+momentum: steps to target"],
        ),
        Criterion(
            "on the CNN, SGD+momentum's best held-out accuracy is at least Adam's",
            lambda f: (
                f["CNN SGD+momentum: best test accuracy over the grid"]
                >= f["CNN Adam: best test accuracy over the grid"]
            ),
        ),
    ),
    measure=measure,
)
