"""Adam finds a good solution fast; SGD with momentum sometimes generalizes better.

Generalization is only measured honestly if the test set plays no part in choosing what is
reported: every lr and checkpoint here is chosen on a validation split carved from the
training data, and the test set is read only at the chosen configuration. Adam and SGD get
the same tuning budget (grids of the same size, widened by the same rule) and the same
seeds; comparisons are of means over seeds with a margin, and the per-seed count is shown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from .. import torch as dt
from ..lab.runner import run_one
from ..lab.spec import parse_optimizer, parse_regime
from ..lab.training import RunSpec
from ..lab.workloads import CNN1D, Problem, forward, mnist1d_data, supervised_problem
from .base import Claim, Context, EffectSpec, Measurement, Statement, require, support
from .common import Tuned, log_ratio, one_thread, pyplot, save_figure, spread, steps_to, tune

# A validation loss never outweighs one validation sample's worth of accuracy: accuracies
# differ by at least 1 / n_val >= 1e-3 here, the tie-break adds at most 1e-6 * 100.
_TIE = 1e-6
_LOSS_CAP = 100.0


def _score(row: dict[str, float]) -> float:
    """Selection score of a checkpoint (lower is better): the validation error, ties broken
    by the validation loss; a diverged checkpoint loses."""
    acc, loss = row.get("val_acc", math.nan), row.get("val_loss", math.nan)
    if not (math.isfinite(acc) and math.isfinite(loss)):
        return math.inf
    return (1.0 - acc) + _TIE * min(loss, _LOSS_CAP)


def _pick(evals: Sequence[dict[str, float]]) -> dict[str, float]:
    """The checkpoint chosen on validation (the earliest of equals); the test set unread."""
    return min((e for e in evals if e["step"] > 0), key=_score)


# ------------------------------------------------------------------ Wilson et al.

WILSON_FIT, WILSON_VAL, WILSON_TEST = 40, 10, 400


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


def _wilson_draw(seed: int) -> tuple[torch.Tensor, ...]:
    """One draw of the problem: fit, validation and test inputs and labels. The validation
    samples are carved from the training draw: like test samples, their unique features are
    never seen in training."""
    rng = np.random.default_rng(seed)
    n = WILSON_FIT + WILSON_VAL
    dim = 3 + 5 * (n + WILSON_TEST)
    x_all, y_all = wilson_data(n, dim, rng, 0)
    xt, yt = wilson_data(WILSON_TEST, dim, rng, n)
    fit, val = slice(None, WILSON_FIT), slice(WILSON_FIT, None)
    return x_all[fit], y_all[fit], x_all[val], y_all[val], xt, yt


def _wilson_runs(
    cls: type, lr: float, steps: int, seeds: Sequence[int]
) -> list[list[dict[str, float]]]:
    """Least squares from zero on one draw of the problem per seed; each seed's checkpoints
    with fit, validation and test figures.

    The seeds are trained together, for speed: a step of one seed is mostly overhead, of the
    optimizer and of autograd, that is paid here once per step for all. Their weights are
    the rows of one parameter, whose gradient is the gradient of the sum of the seeds' mean
    losses: row ``i`` holds seed ``i``'s own gradient alone, and the optimizers here are
    elementwise, so each row takes its one-seed steps. The engine is the reference one, which
    one seed's 2,253 weights get under ``engine="auto"``, whatever the number of seeds.

    The gradient of ``0.5 * mean((x @ w - y) ** 2)`` is written out, as the products autograd
    computes for it (``x.t() @ (0.5 / n * (2 * r))``, the matrix-vector products of one
    seed), so the rows are bit for bit the one-seed runs (tested against them). Autograd's
    bookkeeping would cost more than these few products; and a batched matmul of a vector is
    slower on CPU than the separate ones, and rounds differently.

    A seed whose training loss is no longer finite stops recording there (its score is inf,
    so it loses the selection); its row runs on unrecorded, which touches no other row.
    """
    draws = [_wilson_draw(seed) for seed in seeds]
    x, y, xv, yv, xt, yt = zip(*draws, strict=True)
    held = (("train", x, y), ("val", xv, yv), ("test", xt, yt))
    w = torch.zeros(len(seeds), x[0].shape[-1], dtype=torch.float64, requires_grad=True)
    opt = cls([w], lr=lr, engine="reference")
    scale = 0.5 / WILSON_FIT  # d(0.5 * mean)/d(r ** 2), as autograd rounds it
    every = max(1, steps // 50)
    evals: list[list[dict[str, float]]] = [[] for _ in seeds]
    live = list(range(len(seeds)))  # the seeds still recording
    for step in range(1, steps + 1):
        with torch.no_grad():
            w.grad = torch.stack(
                [a.t() @ (scale * (2.0 * (a @ row - b))) for a, b, row in zip(x, y, w, strict=True)]
            )
        opt.step()
        if step % every == 0 or step == steps:
            with torch.no_grad():
                for i in list(live):
                    row = {"step": float(step)}
                    for tag, a, b in held:
                        out = a[i] @ w[i]
                        row[f"{tag}_loss"] = float(0.5 * ((out - b[i]) ** 2).mean())
                        row[f"{tag}_acc"] = float((out.sign() == b[i]).double().mean())
                    evals[i].append(row)
                    if not math.isfinite(row["train_loss"]):
                        live.remove(i)  # diverged: its score is inf, so it loses the selection
            if not live:
                break
    return evals


def _measure_wilson(
    ctx: Context, fig: dict[str, float], flags: dict[str, str], samples: dict[str, list[float]]
) -> None:
    steps = 1000 if ctx.quick else 3000
    picks: dict[str, list[dict[str, float]]] = {}
    for name, cls, grid in (
        ("SGD", dt.SGD, (1e-3, 1e-2, 1e-1)),
        ("Adam", dt.Adam, (1e-4, 1e-3, 1e-2)),
    ):

        def evaluate(lr: float, cls: type = cls) -> tuple[float, list[dict[str, float]]]:
            chosen = [_pick(e) for e in _wilson_runs(cls, lr, steps, range(ctx.seeds))]
            return float(np.mean([_score(c) for c in chosen])), chosen

        tuned = tune(evaluate, grid)
        picks[name] = tuned.best
        test = [c["test_acc"] for c in tuned.best]
        fig[f"Wilson {name}: lr chosen on validation"] = tuned.lr
        fig[f"Wilson {name}: chosen step"] = float(np.mean([c["step"] for c in tuned.best]))
        fig[f"Wilson {name}: train accuracy"] = float(np.mean([c["train_acc"] for c in tuned.best]))
        fig[f"Wilson {name}: validation accuracy"] = float(
            np.mean([c["val_acc"] for c in tuned.best])
        )
        fig[f"Wilson {name}: test accuracy"] = float(np.mean(test))
        fig[f"Wilson {name}: test accuracy, spread over seeds"] = spread(test)
        flags.update(tuned.flag(f"Wilson {name}: test accuracy"))
    samples[WILSON_GAP] = [
        100 * (s["test_acc"] - a["test_acc"])
        for s, a in zip(picks["SGD"], picks["Adam"], strict=True)
    ]
    fig["Wilson: seeds where SGD's test accuracy is 10 points above Adam's"] = float(
        sum(
            s["test_acc"] >= a["test_acc"] + 0.1
            for s, a in zip(picks["SGD"], picks["Adam"], strict=True)
        )
    )


# ------------------------------------------------------------------ CNN on MNIST-1D

VAL_FRACTION = 0.2  # of MNIST-1D's 4,000 training samples, held out for model selection
BATCH = 64


def _split() -> tuple[np.ndarray, ...]:
    """MNIST-1D with a fixed validation split carved from its training samples."""
    x, y, x_test, y_test = mnist1d_data()
    order = np.random.default_rng(0).permutation(len(x))
    n_val = int(len(x) * VAL_FRACTION)
    val, fit = order[:n_val], order[n_val:]
    return x[fit], y[fit], x[val], y[val], x_test, y_test


def _cnn_build(seed: int, options: dict[str, Any]) -> Problem:
    """The lab's 1-D CNN trained on the fitting part only; ``evaluate`` reports validation
    and test figures side by side (selection reads only the validation ones)."""
    x, y, xv, yv, xt, yt = (torch.from_numpy(a) for a in _split())
    torch.manual_seed(seed)
    model = CNN1D().double()
    loss_fn = torch.nn.functional.cross_entropy
    problem = supervised_problem(model, x.double(), y.long(), None, None, loss_fn, True)
    held = {"val": (xv.double(), yv.long()), "test": (xt.double(), yt.long())}

    def evaluate() -> dict[str, float]:
        row = {}
        with torch.no_grad():
            for tag, (a, b) in held.items():
                out = forward(model, a)  # in chunks, as the lab evaluates
                row[f"{tag}_loss"] = float(loss_fn(out, b))
                row[f"{tag}_acc"] = float((out.argmax(-1) == b).double().mean())
        return row

    problem.evaluate = evaluate
    return problem


def _cnn_runs(optimizer: str, lr: float, seeds: int, epochs: int) -> list[dict[str, Any]]:
    n_fit = len(_split()[0])
    steps = epochs * math.ceil(n_fit / BATCH)
    # five checkpoints an epoch (every 10 steps): steps to the target are resolved to a few
    # percent, well inside the margin they are judged with
    every = math.ceil(n_fit / BATCH) // 5
    runs = []
    for seed in range(seeds):
        spec = RunSpec(
            "mnist1d-cnn, validation split",
            parse_optimizer(optimizer),
            lr,
            seed,
            parse_regime(f"minibatch:{BATCH}"),
            steps,
            every,
        )
        runs.append(asdict(run_one(spec, _cnn_build)))
    return runs


def _measure_cnn(
    ctx: Context, fig: dict[str, float], flags: dict[str, str], samples: dict[str, list[float]]
) -> dict[str, dict[str, Any]]:
    epochs = 4 if ctx.quick else 20
    target = 1.0 if ctx.quick else 0.5
    fig["CNN epochs"] = epochs
    fig["CNN target training loss"] = target
    # the same budget for both: three lrs a factor of ~3 apart around each optimizer's usual
    # scale for this network, widened by the same rule while the best is at an edge
    grids = {
        "SGD+momentum": ("sgd:momentum=0.9", (3e-2, 1e-1, 3e-1)),
        "Adam": ("adam", (3e-3, 1e-2, 3e-2)),
    }
    chosen: dict[str, list[dict[str, float]]] = {}
    curves: dict[str, dict[str, Any]] = {}
    results: dict[str, dict[float, list[dict[str, Any]]]] = {}  # every lr's runs, per arm
    for label, (opt, grid) in grids.items():

        def evaluate(lr: float, opt: str = opt) -> tuple[float, list[dict[str, Any]]]:
            runs = _cnn_runs(opt, lr, ctx.seeds, epochs)
            return float(np.mean([_score(_pick(r["evals"])) for r in runs])), runs

        tuned = tune(evaluate, grid)
        runs = tuned.best
        chosen[label] = [_pick(r["evals"]) for r in runs]
        test = [c["test_acc"] for c in chosen[label]]
        fig[f"CNN {label}: lr chosen on validation"] = tuned.lr
        fig[f"CNN {label}: chosen checkpoint (epochs)"] = float(
            np.mean([c["step"] for c in chosen[label]]) / runs[0]["spec"]["steps"] * epochs
        )
        fig[f"CNN {label}: validation accuracy"] = float(
            np.mean([c["val_acc"] for c in chosen[label]])
        )
        fig[f"CNN {label}: test accuracy"] = float(np.mean(test))
        fig[f"CNN {label}: test accuracy, spread over seeds"] = spread(test)
        flags.update(tuned.flag(f"CNN {label}: test accuracy"))
        # speed: each optimizer at its fastest lr among those tried (same runs, same budget)
        speed = Tuned({lr: steps_to(r, target) for lr, r in tuned.results.items()}, tuned.results)
        fig[f"CNN {label}: fastest lr to the target"] = speed.lr
        fig[f"CNN {label}: steps to target"] = speed.scores[speed.lr]
        results[label] = tuned.results
        if math.isfinite(speed.scores[speed.lr]):
            flags.update(speed.flag(f"CNN {label}: steps to target"))
        curves[label] = runs[0]
    samples[CNN_GAP] = [
        100 * (s["test_acc"] - a["test_acc"])
        for s, a in zip(chosen["SGD+momentum"], chosen["Adam"], strict=True)
    ]
    # speed over several targets: the ratio depends on how low the target is
    per_target = []
    for goal in SPEED_TARGETS[ctx.quick]:
        reach: dict[str, list[float]] = {}
        for label, by_lr in results.items():
            fastest = Tuned({lr: steps_to(r, goal) for lr, r in by_lr.items()}, by_lr)
            reach[label] = [steps_to([r], goal) for r in by_lr[fastest.lr]]
            fig[f"CNN {label}: steps to training loss {goal:g} (its fastest lr)"] = fastest.scores[
                fastest.lr
            ]
        per_target.append(
            [log_ratio(s, a) for s, a in zip(reach["SGD+momentum"], reach["Adam"], strict=True)]
        )
    samples[CNN_SPEED] = [float(np.median(seed)) for seed in zip(*per_target, strict=True)]
    fig["CNN: seeds where SGD+momentum's test accuracy is above Adam's"] = float(
        sum(
            s["test_acc"] > a["test_acc"]
            for s, a in zip(chosen["SGD+momentum"], chosen["Adam"], strict=True)
        )
    )
    return curves


WILSON_GAP = "Wilson: SGD's test accuracy minus Adam's (points)"
CNN_GAP = "CNN: SGD+momentum's test accuracy minus Adam's (points)"
CNN_SPEED = "CNN: median over targets of log(SGD+momentum's steps to it / Adam's)"
SPEED_TARGETS = {True: (1.5, 1.0), False: (1.5, 1.0, 0.5, 0.3)}  # training losses, by quick


def measure(ctx: Context) -> Measurement:
    fig: dict[str, float] = {"seeds": ctx.seeds}
    flags: dict[str, str] = {}
    samples: dict[str, list[float]] = {}
    with one_thread():
        _measure_wilson(ctx, fig, flags, samples)
        curves = _measure_cnn(ctx, fig, flags, samples)
    plt = pyplot()
    f, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, run in curves.items():
        st = [e["step"] for e in run["evals"]]
        axes[0].plot(st, [e["train_loss"] for e in run["evals"]], label=label)
        line = axes[1].plot(st, [e.get("val_acc", np.nan) for e in run["evals"]], label=label)
        axes[1].plot(
            st,
            [e.get("test_acc", np.nan) for e in run["evals"]],
            linestyle=":",
            color=line[0].get_color(),
        )
    axes[0].axhline(fig["CNN target training loss"], color="grey", linestyle=":")
    axes[0].set_ylabel("training loss")
    axes[1].set_ylabel("accuracy (solid: validation, dotted: test)")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    f.suptitle(
        f"1-D CNN on MNIST-1D, {fig['CNN epochs']:.0f} epochs, lr chosen on validation (seed 0)",
        fontsize=10,
    )
    path = save_figure(ctx, f, "adam-vs-sgd")
    return Measurement(
        fig,
        [("Adam vs SGD with momentum on MNIST-1D", path)],
        remarks=[
            "Wilson et al.'s problem: 50 samples drawn for training, 40 fitted and 10 held out "
            "for validation, least squares on a linear model from zero, 400 fresh test samples; "
            "the unique features of validation and test samples are never seen in training."
        ],
        flags=flags,
        samples=samples,
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
        "MNIST-1D (mini-batches of 64; 1,000 test samples; 20% of the 4,000 training samples "
        "held out for validation), one run per seed and lr. For each optimizer the lr and "
        "the checkpoint are chosen on the validation split (highest validation accuracy, "
        "ties broken by validation loss; the lr by its mean over seeds), from a grid of the "
        "same size for Adam and for SGD (with momentum 0.9 on the CNN), widened by the same "
        "rule while the best is at an edge; the test set is read only at the chosen lr and "
        "checkpoint. Speed: steps to a training-loss target (1.0 quick, 0.5 full), each "
        "optimizer at its fastest lr of those runs. Torch runs on one thread."
    ),
    statements=(
        Statement(
            "wilson",
            "SGD can generalize better than Adam (Wilson et al.'s constructed problem).",
            (
                require(
                    "SGD fits the training set (at its chosen lr and step, every seed)",
                    "Wilson SGD: train accuracy",
                    ">=",
                    1.0,
                ),
                require(
                    "Adam fits the training set (at its chosen lr and step, every seed)",
                    "Wilson Adam: train accuracy",
                    ">=",
                    1.0,
                ),
                support(
                    "... in every seed",
                    "Wilson: seeds where SGD's test accuracy is 10 points above Adam's",
                    ">=",
                    "seeds",
                ),
            ),
            effect=EffectSpec(
                WILSON_GAP,
                10.0,
                "SGD's test accuracy minus Adam's, each at its validation-chosen lr and step",
                " pts",
            ),
        ),
        Statement(
            "adam-fast",
            "Adam finds a good solution fast.",
            (
                support(
                    "on the CNN, Adam reaches the training-loss target in under 0.8x the steps "
                    "SGD+momentum needs (median over seeds, each at its fastest lr)",
                    "CNN Adam: steps to target",
                    "<",
                    "CNN SGD+momentum: steps to target",
                    0.8,
                ),
            ),
            effect=EffectSpec(
                CNN_SPEED,
                math.log(1 / 0.8),
                "per seed, the median over training-loss targets (1.5, 1.0, 0.5, 0.3; quick: "
                "1.5, 1.0) of log(SGD+momentum's steps to the target / Adam's), each at its "
                "fastest lr for that target (log 1.25 = 0.223: Adam in 0.8x the steps)",
            ),
        ),
        Statement(
            "sgd-generalizes",
            "SGD with momentum sometimes generalizes better than Adam on vision tasks.",
            (
                support(
                    "on the CNN, SGD+momentum's test accuracy is above Adam's in every seed",
                    "CNN: seeds where SGD+momentum's test accuracy is above Adam's",
                    ">=",
                    "seeds",
                ),
            ),
            effect=EffectSpec(
                CNN_GAP,
                0.5,
                "on the CNN, SGD+momentum's test accuracy minus Adam's, each at its "
                'validation-chosen lr and checkpoint (half a point counts: "sometimes '
                'better" claims a difference, not a size)',
                " pts",
            ),
        ),
    ),
    measure=measure,
    max_seeds=3,  # the CNN costs ~25 s a seed: more would break the full run's 120 s
)
