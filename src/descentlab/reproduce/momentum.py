"""Momentum: ill-conditioning, noisy directions, saddle points."""

from __future__ import annotations

import math

import numpy as np

from .. import numpy as dnp
from .base import Claim, Context, Criterion, Measurement
from .common import pyplot, save_figure

KAPPAS = (10, 100, 1000)


def _steps_to_tol(
    opt: dnp.Transformation, h: np.ndarray, w0: np.ndarray, tol: float, max_steps: int
) -> int:
    """Steps of full-batch descent on 0.5 * sum(h * w**2) until f <= tol * f(w0)."""
    w, state = w0.copy(), opt.init(w0)
    f0 = 0.5 * float(np.sum(h * w0**2))
    for step in range(1, max_steps + 1):
        w, state = opt.update(w, h * w, state)
        f = 0.5 * float(np.sum(h * w**2))
        if not math.isfinite(f) or f > 1e6 * f0:
            return max_steps + 1
        if f <= tol * f0:
            return step
    return max_steps + 1


def measure_ravine(ctx: Context) -> Measurement:
    fig: dict[str, float] = {}
    rows = []
    w0 = np.array([1.0, 1.0])
    # the same fractions of each method's stability limit (2/L for GD, 2(1+beta)/L for
    # heavy-ball; L = 1 here), so both get the same tuning budget
    factors = (0.5, 1.0, 1.5, 1.9)
    betas = (0.5, 0.8, 0.9, 0.95, 0.99)
    for kappa in KAPPAS:
        h = np.array([1.0 / kappa, 1.0])  # L = 1, mu = 1/kappa
        cap = 40 * kappa + 1000
        gd = min(_steps_to_tol(dnp.sgd(lr=a), h, w0, 1e-6, cap) for a in factors)
        hb = min(
            _steps_to_tol(dnp.sgd(lr=a * (1 + b), momentum=b), h, w0, 1e-6, cap)
            for a in factors
            for b in betas
        )
        fig[f"GD steps kappa={kappa}"], fig[f"momentum steps kappa={kappa}"] = gd, hb
        rows.append([str(kappa), str(gd), str(hb), f"{gd / hb:.1f}x"])
    lk = np.log(KAPPAS)
    fig["GD log-log slope"] = float(
        np.polyfit(lk, np.log([fig[f"GD steps kappa={k}"] for k in KAPPAS]), 1)[0]
    )
    fig["momentum log-log slope"] = float(
        np.polyfit(lk, np.log([fig[f"momentum steps kappa={k}"] for k in KAPPAS]), 1)[0]
    )
    plt = pyplot()
    f, ax = plt.subplots(figsize=(5, 3.6))
    ax.loglog(KAPPAS, [fig[f"GD steps kappa={k}"] for k in KAPPAS], "o-", label="gradient descent")
    ax.loglog(
        KAPPAS,
        [fig[f"momentum steps kappa={k}"] for k in KAPPAS],
        "s-",
        label="heavy-ball momentum",
    )
    ax.set_xlabel("condition number kappa")
    ax.set_ylabel("steps to f <= 1e-6 f(w0)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    path = save_figure(ctx, f, "momentum-ravine")
    return Measurement(
        fig,
        [("Steps to tolerance vs condition number, each tuned", path)],
        (["kappa", "GD steps", "momentum steps", "speed-up"], rows),
    )


RAVINE = Claim(
    key="momentum-ravine",
    title="Momentum accelerates consistent directions (ill-conditioned ravines)",
    quote="[Momentum] smooths out noisy gradient directions, accelerates in consistent ones.",
    experiment=(
        "Full-batch descent on 0.5(x^2/kappa + y^2) from (1, 1) for kappa = 10, 100, "
        "1000: steps until the loss falls below 1e-6 of its start, gradient descent "
        "tuned over 4 learning rates (0.5 to 1.9 x 1/L), heavy-ball momentum over the "
        "same fractions of its own stability limit 2(1+beta)/L x 5 betas."
    ),
    criteria=(
        Criterion(
            "momentum needs fewer steps than gradient descent at every kappa",
            lambda f: all(
                f[f"momentum steps kappa={k}"] < f[f"GD steps kappa={k}"] for k in KAPPAS
            ),
        ),
        Criterion(
            "momentum's steps grow more slowly with kappa (log-log slope at least 0.25 "
            "below gradient descent's)",
            lambda f: f["momentum log-log slope"] <= f["GD log-log slope"] - 0.25,
        ),
    ),
    measure=measure_ravine,
)


def _noisy_run(opt: dnp.Transformation, steps: int, sigma: float, seed: int) -> np.ndarray:
    """Descent on 0.5 * (x**2 + 10 * y**2) with noise on y's gradient only; the path."""
    rng = np.random.default_rng(seed)
    w = np.array([5.0, 0.0])
    state = opt.init(w)
    path = [w.copy()]
    h = np.array([1.0, 10.0])
    for _ in range(steps):
        g = h * w + np.array([0.0, sigma * rng.standard_normal()])
        w, state = opt.update(w, g, state)
        path.append(w.copy())
    return np.array(path)


def measure_noise(ctx: Context) -> Measurement:
    steps, lr, beta, sigma = 400, 0.02, 0.9, 5.0
    fig: dict[str, float] = {"lr": lr, "beta": beta, "noise sigma": sigma}
    forms = {
        "SGD": dnp.sgd(lr=lr),
        "EMA momentum (seed's form)": dnp.momentum(lr=lr, momentum=beta),
        "heavy-ball momentum (torch's form)": dnp.sgd(lr=lr, momentum=beta),
    }
    paths = {}
    for name, opt in forms.items():
        runs = [_noisy_run(opt, steps, sigma, s) for s in range(max(ctx.seeds, 3))]
        paths[name] = runs[0]
        fig[f"{name}: std of y, 2nd half"] = float(
            np.mean([r[steps // 2 :, 1].std() for r in runs])
        )
        fig[f"{name}: std of y-steps, 2nd half"] = float(
            np.mean([np.diff(r[steps // 2 :, 1]).std() for r in runs])
        )
        fig[f"{name}: steps until x < 0.05"] = float(
            np.median(
                [
                    int(np.argmax(r[:, 0] < 0.05)) if (r[:, 0] < 0.05).any() else steps + 1
                    for r in runs
                ]
            )
        )
    plt = pyplot()
    f, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, p in paths.items():
        axes[0].plot(p[:, 0], label=name)
        axes[1].plot(p[:, 1], label=name, linewidth=0.8)
    axes[0].set_title("x (consistent direction)", fontsize=9)
    axes[1].set_title("y (noisy direction)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    path = save_figure(ctx, f, "momentum-noise")
    ratio = fig["EMA momentum (seed's form): std of y, 2nd half"] / fig["SGD: std of y, 2nd half"]
    return Measurement(
        fig,
        [("The same lr for all three: x and y over the steps (seed 0)", path)],
        remarks=[f"Fluctuation ratio EMA momentum / SGD: {ratio:.2f}."],
    )


NOISE = Claim(
    key="momentum-noise",
    title="Momentum smooths noisy directions",
    quote="Smooths out noisy gradient directions, accelerates in consistent ones.",
    experiment=(
        "0.5(x^2 + 10 y^2) from (5, 0) with Gaussian noise (sigma 5) on the y "
        "gradient only, 400 steps at the same lr 0.02: plain SGD, the seed's EMA "
        "momentum (beta 0.9) and torch's heavy-ball momentum (beta 0.9); fluctuation "
        "of y over the second half, and steps until x < 0.05."
    ),
    criteria=(
        Criterion(
            "the seed's EMA momentum takes smoother steps along the noisy direction "
            "(std of the y-steps below 0.7x SGD's)",
            lambda f: (
                f["EMA momentum (seed's form): std of y-steps, 2nd half"]
                < 0.7 * f["SGD: std of y-steps, 2nd half"]
            ),
        ),
        Criterion(
            "the seed's EMA momentum fluctuates less along the noisy direction than SGD "
            "(std of y below 0.7x SGD's)",
            lambda f: (
                f["EMA momentum (seed's form): std of y, 2nd half"]
                < 0.7 * f["SGD: std of y, 2nd half"]
            ),
        ),
        Criterion(
            "the seed's EMA momentum accelerates the consistent direction (reaches "
            "x < 0.05 in under 0.8x SGD's steps)",
            lambda f: (
                f["EMA momentum (seed's form): steps until x < 0.05"]
                < 0.8 * f["SGD: steps until x < 0.05"]
            ),
        ),
        Criterion(
            "heavy-ball momentum accelerates the consistent direction (under 0.5x SGD's steps)",
            lambda f: (
                f["heavy-ball momentum (torch's form): steps until x < 0.05"]
                < 0.5 * f["SGD: steps until x < 0.05"]
            ),
        ),
    ),
    measure=measure_noise,
)


def _escape(opt: dnp.Transformation, max_steps: int = 5000) -> int:
    """Steps from next to the saddle of x^2 - y^2 + y^4 until |y| > 0.5."""
    w = np.array([1.0, 1e-3])
    state = opt.init(w)
    for step in range(1, max_steps + 1):
        g = np.array([2 * w[0], -2 * w[1] + 4 * w[1] ** 3])
        w, state = opt.update(w, g, state)
        if abs(w[1]) > 0.5:
            return step
    return max_steps + 1


def measure_saddle(ctx: Context) -> Measurement:
    fig: dict[str, float] = {}
    for lr in (0.01, 0.03):
        fig[f"GD escape steps lr={lr}"] = _escape(dnp.sgd(lr=lr))
        fig[f"heavy-ball escape steps lr={lr}"] = _escape(dnp.sgd(lr=lr, momentum=0.9))
        fig[f"EMA momentum escape steps lr={lr}"] = _escape(dnp.momentum(lr=lr, momentum=0.9))
    return Measurement(fig)


SADDLE = Claim(
    key="momentum-saddle",
    title="Momentum helps escape saddle points",
    quote="Momentum helps escape saddle points and noisy gradient directions.",
    experiment=(
        "x^2 - y^2 + y^4 started at (1, 0.001), right next to the saddle at the origin: "
        "steps until |y| > 0.5 for gradient descent, heavy-ball momentum (0.9) and the "
        "seed's EMA momentum (0.9), at lr 0.01 and 0.03."
    ),
    criteria=(
        Criterion(
            "heavy-ball momentum escapes in under half of gradient descent's steps at both lrs",
            lambda f: all(
                f[f"heavy-ball escape steps lr={lr}"] < 0.5 * f[f"GD escape steps lr={lr}"]
                for lr in (0.01, 0.03)
            ),
        ),
        Criterion(
            "the seed's EMA momentum escapes in under half of gradient descent's steps at both lrs",
            lambda f: all(
                f[f"EMA momentum escape steps lr={lr}"] < 0.5 * f[f"GD escape steps lr={lr}"]
                for lr in (0.01, 0.03)
            ),
        ),
    ),
    measure=measure_saddle,
)
