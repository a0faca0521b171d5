"""Batch GD vs one-sample SGD vs mini-batch, at equal compute."""

from __future__ import annotations

import time

import numpy as np
import torch

from ..lab.workloads import WORKLOADS
from .base import Claim, Context, Criterion, Measurement
from .common import best, final_loss, pyplot, save_figure

GRIDS = {"full": (0.3, 1.0, 3.0), "sgd": (0.01, 0.03, 0.1), "minibatch:32": (0.1, 0.3, 1.0)}


def _gradient_noise(batch: int, draws: int = 200) -> float:
    """E|g_B - g|^2 / |g|^2 at the initial point of digits-logreg."""
    problem = WORKLOADS["digits-logreg"].build(0, {})
    params, n = problem.params, int(problem.n_train or 0)

    def grad(idx):
        for p in params:
            p.grad = None
        problem.loss(idx).backward()
        return torch.cat([p.grad.reshape(-1) for p in params]).clone()

    full = grad(None)
    gen = torch.Generator().manual_seed(0)
    errs = [
        float((grad(torch.randint(0, n, (batch,), generator=gen)) - full).pow(2).sum())
        for _ in range(draws)
    ]
    return float(np.mean(errs) / full.pow(2).sum())


def measure(ctx: Context) -> Measurement:
    from .common import lab_runs

    epochs = 2 if ctx.quick else 5
    fig: dict[str, float] = {"epochs": epochs}
    curves = {}
    for regime, grid in GRIDS.items():
        t0 = time.perf_counter()
        lr, runs = best(lab_runs("digits-logreg", "sgd", grid, ctx.seeds, regime, epochs=epochs))
        name = regime.split(":")[0]
        fig[f"{name} best lr"] = lr
        fig[f"{name} final loss"] = final_loss(runs)
        fig[f"{name} updates"] = runs[0]["spec"]["steps"]
        fig[f"{name} train seconds"] = float(np.mean([r["seconds"] for r in runs]))
        fig[f"{name} sweep seconds"] = time.perf_counter() - t0
        curves[regime] = runs[0]
    budget = fig["minibatch train seconds"]
    evals = [
        e
        for e in curves["sgd"]["evals"]
        if e["step"] == 0 or curves["sgd"]["time"][e["step"] - 1] <= budget
    ]
    fig["sgd loss within minibatch's seconds"] = evals[-1]["train_loss"]
    fig["gradient noise B=1"] = _gradient_noise(1)
    fig["gradient noise B=32"] = _gradient_noise(32)

    plt = pyplot()
    f, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for regime, run in curves.items():
        steps = run["spec"]["steps"]
        xs = [e["step"] / steps * epochs for e in run["evals"]]
        ys = [e["train_loss"] for e in run["evals"]]
        axes[0].plot(xs, ys, label=regime)
        ts = [0.0] + [run["time"][e["step"] - 1] for e in run["evals"][1:]]
        axes[1].plot(ts, ys, label=regime)
    for ax, xl in zip(axes, ("epochs (samples seen / N)", "training seconds"), strict=True):
        ax.set_yscale("log")
        ax.set_xlabel(xl)
        ax.set_ylabel("full training loss")
        ax.legend()
        ax.grid(alpha=0.3)
    f.suptitle("digits logistic regression, SGD at each regime's best lr (seed 0)", fontsize=10)
    path = save_figure(ctx, f, "regimes")
    return Measurement(fig, [("Loss per epoch and per second for the three regimes", path)])


CLAIM = Claim(
    key="regimes",
    title="Batch GD, SGD and mini-batch SGD",
    quote=(
        "Batch GD: exact gradient, but requires a full pass over all data before each "
        "update. SGD: very noisy, but one update per sample - much faster per epoch. "
        "Mini-batch SGD (standard in practice) ... B is typically 32-256."
    ),
    experiment=(
        "Logistic regression on scikit-learn's digits (1,438 training samples), plain "
        "SGD in three regimes at equal compute (the same number of epochs), each with "
        "its best of three learning rates; the gradient noise E|g_B - g|^2/|g|^2 "
        "measured at the start for B = 1 and B = 32."
    ),
    criteria=(
        Criterion(
            "one-sample SGD's gradient is at least 10x noisier than a 32-sample mini-batch's",
            lambda f: f["gradient noise B=1"] >= 10 * f["gradient noise B=32"],
        ),
        Criterion(
            "per epoch, one-sample SGD ends at a lower loss than batch GD",
            lambda f: f["sgd final loss"] < f["full final loss"],
        ),
        Criterion(
            "per epoch, mini-batch ends at a lower loss than batch GD",
            lambda f: f["minibatch final loss"] < f["full final loss"],
        ),
        Criterion(
            "at equal epochs, mini-batch ends within 1.25x of one-sample SGD's loss",
            lambda f: f["minibatch final loss"] <= 1.25 * f["sgd final loss"],
        ),
        Criterion(
            "at equal training time (mini-batch's), mini-batch reaches a lower loss than "
            "one-sample SGD",
            lambda f: f["minibatch final loss"] < f["sgd loss within minibatch's seconds"],
        ),
    ),
    measure=measure,
)
