"""RMSProp's per-parameter scaling, Adam as momentum + RMSProp, and bias correction."""

from __future__ import annotations

import numpy as np
import torch

from .. import numpy as dnp
from .. import rules
from .base import Claim, Context, Criterion, Measurement
from .common import best, final_loss, lab_runs, pyplot, save_figure

# ------------------------------------------------------------------ RMSProp and scales


def _scaled_run(opt: dnp.Transformation, h: np.ndarray, steps: int) -> np.ndarray:
    w, state = np.zeros_like(h), opt.init(np.zeros_like(h))
    with np.errstate(all="ignore"):  # too large an lr diverges: that run then loses
        for _ in range(steps):
            w, state = opt.update(w, h * (w - 1.0), state)
    return w


def measure_scales(ctx: Context) -> Measurement:
    h = np.logspace(-3, 3, 13)  # curvatures (and so gradient scales) over six decades
    steps = 500

    def loss(w: np.ndarray) -> float:
        with np.errstate(all="ignore"):
            return float(0.5 * np.sum(h * (w - 1.0) ** 2))

    grid = np.logspace(-5, 0, 11)
    results = {}
    for name, make in (
        ("SGD", lambda lr: dnp.sgd(lr=lr)),
        ("RMSprop", lambda lr: dnp.rmsprop(lr=lr)),
    ):
        runs = {lr: _scaled_run(make(lr), h, steps) for lr in grid}
        lr = min(runs, key=lambda k: loss(runs[k]) if np.isfinite(loss(runs[k])) else np.inf)
        results[name] = (lr, runs[lr])
    fig: dict[str, float] = {"steps": steps, "curvature range": float(h[-1] / h[0])}
    for name, (lr, w) in results.items():
        fig[f"{name} best lr"] = float(lr)
        fig[f"{name} final loss"] = loss(w)
        fig[f"{name} fraction of weights within 10% of optimum"] = float(np.mean(abs(w - 1) < 0.1))
    plt = pyplot()
    f, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, (lr, w) in results.items():
        ax.loglog(h, np.maximum(abs(w - 1.0), 1e-12), "o-", label=f"{name} (best lr {lr:.2g})")
    ax.set_xlabel("curvature of the coordinate (gradient scale)")
    ax.set_ylabel(f"|w - w*| after {steps} steps")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    path = save_figure(ctx, f, "rmsprop-scales")
    return Measurement(fig, [("Distance to the optimum per coordinate, by curvature", path)])


SCALES = Claim(
    key="rmsprop-scales",
    title="Adaptive learning rates handle gradients of wildly different scales",
    quote=(
        "[RMSProp] divides each weight update by the RMS of recent gradients for that "
        "weight ... Adaptive LR per weight handles gradients of wildly different scales."
    ),
    experiment=(
        "0.5 * sum_i h_i (w_i - 1)^2 with 13 curvatures h_i from 1e-3 to 1e3 (gradient "
        "scales over six decades), 500 steps from 0; SGD and RMSprop each at their best "
        "of 11 learning rates from 1e-5 to 1."
    ),
    criteria=(
        Criterion(
            "RMSprop's best final loss is below 1/10 of SGD's best",
            lambda f: f["RMSprop final loss"] < 0.1 * f["SGD final loss"],
        ),
        Criterion(
            "RMSprop brings at least 90% of the weights within 10% of their optimum",
            lambda f: f["RMSprop fraction of weights within 10% of optimum"] >= 0.9,
        ),
    ),
    measure=measure_scales,
)

# ------------------------------------------------------------------ Adam = momentum + RMSProp


def measure_composition(ctx: Context) -> Measurement:
    b1, b2, lr, eps, steps = 0.9, 0.999, 1e-2, 1e-8, 100
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(50) * rng.uniform(0.01, 10, 50) for _ in range(steps)]
    # the pieces: the seed's momentum buffer (an EMA of g) and RMSProp's average of g^2
    first, second = rules.EmaMomentum(), rules.ScaleByRms()
    w_pieces = np.zeros(50)
    w_uncorrected = np.zeros(50)
    m_state = {"momentum_buffer": np.zeros(50)}
    v_state = {"square_avg": np.zeros(50)}
    for t, g in enumerate(grads, start=1):
        m, m_state = first(g, w_pieces, m_state, first.coefficients({"momentum": b1}, t))
        _, v_state = second(g, w_pieces, v_state, second.coefficients({"alpha": b2, "eps": eps}, t))
        v = v_state["square_avg"]
        w_pieces = w_pieces - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        w_uncorrected = w_uncorrected - lr * m / (np.sqrt(v) + eps)
        if t == 10:
            early_uncorrected = w_uncorrected.copy()
            early_pieces = w_pieces.copy()
    adam = dnp.adam(lr=lr, betas=(b1, b2), eps=eps)
    w_adam, s = np.zeros(50), adam.init(np.zeros(50))
    p = torch.zeros(50, dtype=torch.float64, requires_grad=True)
    torch_adam = torch.optim.Adam([p], lr=lr, betas=(b1, b2), eps=eps)
    for t, g in enumerate(grads, start=1):
        w_adam, s = adam.update(w_adam, g, s)
        p.grad = torch.from_numpy(g)
        torch_adam.step()
        if t == 10:
            early_adam = w_adam.copy()

    def rel(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.max(abs(a - b)) / np.max(abs(b)))

    fig = {
        "steps": steps,
        "pieces vs descentlab Adam (rel.)": rel(w_pieces, w_adam),
        "pieces vs torch.optim.Adam (rel.)": rel(w_pieces, p.detach().numpy()),
        "pieces without bias correction vs Adam at step 10 (rel.)": rel(
            early_uncorrected, early_adam
        ),
        "pieces with bias correction vs Adam at step 10 (rel.)": rel(early_pieces, early_adam),
    }
    return Measurement(
        fig,
        remarks=[
            "The pieces are descentlab's own EmaMomentum (the seed's momentum buffer) and "
            "ScaleByRms (RMSProp's running average of g^2), combined by hand with the two bias "
            "corrections; 100 steps of random gradients whose scales span three decades."
        ],
    )


COMPOSITION = Claim(
    key="adam-composition",
    title="Adam = momentum + RMSProp, with bias correction",
    quote="Adam = Momentum + RMSProp, with bias correction for the first few steps.",
    experiment=(
        "Run the seed's momentum EMA and RMSProp's squared-gradient EMA side by side, "
        "combine them as m_hat / (sqrt(v_hat) + eps), and compare with Adam "
        "(descentlab's and torch.optim's) over 100 steps at float64."
    ),
    criteria=(
        Criterion(
            "momentum + RMSProp + bias correction equals descentlab's Adam to 1e-12",
            lambda f: f["pieces vs descentlab Adam (rel.)"] <= 1e-12,
        ),
        Criterion(
            "... and torch.optim.Adam to 1e-12",
            lambda f: f["pieces vs torch.optim.Adam (rel.)"] <= 1e-12,
        ),
        Criterion(
            "without bias correction the same pieces are NOT Adam (differ by > 1% at step 10)",
            lambda f: f["pieces without bias correction vs Adam at step 10 (rel.)"] > 0.01,
        ),
    ),
    measure=measure_composition,
)

# ------------------------------------------------------------------ bias correction

BETA2S = (0.9, 0.99, 0.999, 0.9999)


def measure_bias(ctx: Context) -> Measurement:
    fig: dict[str, float] = {}
    g = np.array([0.3, -2.0, 5e-3])
    for b2 in BETA2S:
        steps = {}
        for corrected in (True, False):
            opt = dnp.adam(lr=1e-3, betas=(0.9, b2), eps=1e-12, bias_correction=corrected)
            w, _ = opt.update(np.zeros(3), g, opt.init(np.zeros(3)))
            steps[corrected] = float(np.mean(abs(w)))
        fig[f"first step uncorrected/corrected, beta2={b2}"] = steps[False] / steps[True]
    # training: the paper's section 6.4 asks how early training fares without correction
    n_steps = 60 if ctx.quick else 200
    lrs = (1e-3, 3e-3, 1e-2) if ctx.quick else (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
    curves = {}
    for b2 in (0.99, 0.999) if ctx.quick else (0.99, 0.999, 0.9999):
        for corrected in (True, False):
            spec = f"adam:betas=0.9/{b2}:bias_correction={str(corrected).lower()}"
            lr, runs = best(
                lab_runs("digits-mlp", spec, lrs, ctx.seeds, "minibatch:64", steps=n_steps)
            )
            tag = f"beta2={b2} {'corrected' if corrected else 'uncorrected'}"
            fig[f"{tag}: best lr"] = lr
            fig[f"{tag}: loss at step {n_steps // 6}"] = float(
                np.mean(
                    [
                        next(e["train_loss"] for e in r["evals"] if e["step"] >= n_steps // 6)
                        for r in runs
                    ]
                )
            )
            fig[f"{tag}: final loss"] = final_loss(runs)
            curves[tag] = runs[0]
    plt = pyplot()
    f, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    axes[0].semilogx(
        BETA2S, [fig[f"first step uncorrected/corrected, beta2={b}"] for b in BETA2S], "o-"
    )
    axes[0].axhline(1.0, color="grey", linestyle=":")
    axes[0].set_xscale("logit")
    axes[0].set_xlabel("beta2 (beta1 = 0.9)")
    axes[0].set_ylabel("first step: uncorrected / corrected")
    axes[0].grid(alpha=0.3)
    for tag, run in curves.items():
        axes[1].plot(
            [e["step"] for e in run["evals"]],
            [e["train_loss"] for e in run["evals"]],
            "-" if "uncorrected" not in tag else "--",
            label=tag,
        )
    axes[1].set_yscale("log")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("training loss (best lr each)")
    axes[1].legend(fontsize=7)
    axes[1].grid(alpha=0.3)
    path = save_figure(ctx, f, "bias-correction")
    return Measurement(
        fig,
        [
            (
                "Left: how large the uncorrected first step is; right: early "
                "training on digits with and without correction",
                path,
            )
        ],
        remarks=[
            "Without correction the first step is (1 - beta1) / "
            "sqrt(1 - beta2) times the corrected one: tiny only when "
            "beta2 < 1 - (1 - beta1)^2 = 0.99, and too LARGE at Adam's "
            "default 0.999 (the Adam paper's section 6.4 saw instability "
            "there)."
        ],
    )


BIAS = Claim(
    key="bias-correction",
    title="Bias correction prevents tiny initial updates",
    quote=(
        "m_hat = m / (1 - beta1^t)  # bias-corrected (important early in training) ... "
        "Bias correction prevents tiny initial updates from skewing the moving averages."
    ),
    experiment=(
        "The first Adam step with and without bias correction for beta2 = 0.9 ... "
        "0.9999 (beta1 = 0.9), measured from the rule; and early training of the digits "
        "MLP (mini-batch 64) with and without correction, each at its best lr."
    ),
    criteria=(
        Criterion(
            "at the default beta2 = 0.999, the uncorrected first update is tiny (under "
            "half the corrected one)",
            lambda f: f["first step uncorrected/corrected, beta2=0.999"] < 0.5,
        ),
        Criterion(
            "at beta2 = 0.9, the uncorrected first update is tiny (under half)",
            lambda f: f["first step uncorrected/corrected, beta2=0.9"] < 0.5,
        ),
        Criterion(
            "correction matters early: at beta2 = 0.999 the loss a sixth of the way in "
            "differs by more than 10% with and without it",
            lambda f: abs(_early(f, "corrected") / _early(f, "uncorrected") - 1) > 0.1,
        ),
    ),
    measure=measure_bias,
)


def _early(f: dict[str, float], tag: str) -> float:
    key = next(k for k in f if k.startswith(f"beta2=0.999 {tag}: loss at step"))
    return f[key]
