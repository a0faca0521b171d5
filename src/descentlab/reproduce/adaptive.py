"""RMSProp's per-parameter scaling, Adam as momentum + RMSProp, and bias correction."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .. import numpy as dnp
from .. import rules
from .base import (
    Claim,
    Condition,
    Context,
    EffectSpec,
    Measurement,
    Statement,
    require,
    support,
)
from .common import final_loss, lab_runs, log_ratio, pyplot, save_figure, spread, tune, tune_lab

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

    grid = [float(f"{x:.3g}") for x in np.logspace(-5, 0, 11)]  # the same 11 for both
    results = {}
    flags: dict[str, str] = {}
    for name in ("SGD", "RMSprop"):

        def evaluate(lr: float, name: str = name) -> tuple[float, np.ndarray]:
            return _scored(_scaled_run(dnp.Transformation(name.lower(), lr=lr), h, steps), loss)

        tuned = tune(evaluate, grid)
        results[name] = (tuned.lr, tuned.best)
        flags.update(tuned.flag(f"{name} final loss"))
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
    return Measurement(
        fig,
        [("Distance to the optimum per coordinate, by curvature", path)],
        flags=flags,
        samples={SCALES_GAP: [log_ratio(fig["SGD final loss"], fig["RMSprop final loss"])]},
    )


SCALES_GAP = "log(SGD's final loss / RMSprop's), each at its best lr"


def _scored(w: np.ndarray, loss: Callable[[np.ndarray], float]) -> tuple[float, np.ndarray]:
    value = loss(w)
    return (value if np.isfinite(value) else np.inf), w


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
    statements=(
        Statement(
            "scales",
            "A per-weight adaptive lr handles gradients of wildly different scales (where one "
            "global lr cannot).",
            (
                support(
                    "RMSprop's final loss is below 1/10 of SGD's, each at its best lr",
                    "RMSprop final loss",
                    "<",
                    "SGD final loss",
                    0.1,
                ),
                support(
                    "RMSprop brings at least 90% of the weights within 10% of their optimum",
                    "RMSprop fraction of weights within 10% of optimum",
                    ">=",
                    0.9,
                ),
                support(
                    "SGD brings a smaller fraction of the weights there",
                    "SGD fraction of weights within 10% of optimum",
                    "<",
                    "RMSprop fraction of weights within 10% of optimum",
                ),
            ),
            effect=EffectSpec(
                SCALES_GAP,
                math.log(10),
                "log(SGD's final loss / RMSprop's), each at its best of the same 11 lrs "
                "(log 10 = 2.3: ten times lower counts); nothing is random, so one run "
                "measures it exactly",
                deterministic=True,
            ),
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
    statements=(
        Statement(
            "composition",
            "Adam is momentum + RMSProp, with bias correction.",
            (
                require(
                    "momentum + RMSProp + bias correction equals descentlab's Adam to 1e-12",
                    "pieces vs descentlab Adam (rel.)",
                    "<=",
                    1e-12,
                ),
                require(
                    "... and torch.optim.Adam to 1e-12",
                    "pieces vs torch.optim.Adam (rel.)",
                    "<=",
                    1e-12,
                ),
            ),
            exact=True,
        ),
        Statement(
            "needs-correction",
            "The bias correction is part of it: without it the same pieces are not Adam in "
            "the first steps.",
            (
                require(
                    "without bias correction the pieces differ from Adam by more than 1% at "
                    "step 10",
                    "pieces without bias correction vs Adam at step 10 (rel.)",
                    ">",
                    0.01,
                ),
                support(
                    "with it they agree at step 10 (to 1e-12)",
                    "pieces with bias correction vs Adam at step 10 (rel.)",
                    "<=",
                    1e-12,
                ),
            ),
            exact=True,
        ),
    ),
    measure=measure_composition,
)

# ------------------------------------------------------------------ bias correction

BETA2S = (0.9, 0.95, 0.97, 0.99, 0.999, 0.9999)
EARLY = "loss at 1/6 of training"


def _ratio(b2: float) -> str:
    return f"first step uncorrected/corrected, beta2={b2}"


def _early(run: dict[str, Any], k: int) -> float:
    """A run's training loss at its first evaluation at or after step ``k``."""
    return float(next(e["train_loss"] for e in run["evals"] if e["step"] >= k))


def _shared_effect(b2: float) -> str:
    return f"beta2={b2}: log of the uncorrected early loss over the corrected one, same lr"


def measure_bias(ctx: Context) -> Measurement:
    fig: dict[str, float] = {}
    flags: dict[str, str] = {}
    g = np.array([0.3, -2.0, 5e-3])
    for b2 in BETA2S:
        steps = {}
        for corrected in (True, False):
            opt = dnp.adam(lr=1e-3, betas=(0.9, b2), eps=1e-12, bias_correction=corrected)
            w, _ = opt.update(np.zeros(3), g, opt.init(np.zeros(3)))
            steps[corrected] = float(np.mean(abs(w)))
        fig[_ratio(b2)] = steps[False] / steps[True]
    # training: the paper's section 6.4 asks how early training fares without correction;
    # both arms get the same lr grid (widened if the best is at an edge), chosen by final loss
    n_steps = 60 if ctx.quick else 200
    k = n_steps // 6
    grid = (1e-3, 3e-3, 1e-2) if ctx.quick else (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
    curves = {}
    early: dict[str, list[float]] = {}
    samples: dict[str, list[float]] = {}
    for b2 in (0.99, 0.999) if ctx.quick else (0.99, 0.999, 0.9999):
        shared: dict[bool, list[float]] = {}  # early losses at the corrected arm's lr
        for corrected in (True, False):
            spec = f"adam:betas=0.9/{b2}:bias_correction={str(corrected).lower()}"
            tuned = tune_lab("digits-mlp", spec, grid, ctx.seeds, "minibatch:64", steps=n_steps)
            lr = fig[f"beta2={b2} corrected: best lr"] if not corrected else tuned.lr
            at_shared = tuned.results.get(lr)
            if at_shared is None:  # the corrected arm's lr lies outside this arm's grid
                at_shared = lab_runs("digits-mlp", spec, [lr], ctx.seeds, "minibatch:64",
                                     steps=n_steps)[lr]  # fmt: skip
            shared[corrected] = [_early(r, k) for r in at_shared]
            runs = tuned.best
            tag = f"beta2={b2} {'corrected' if corrected else 'uncorrected'}"
            fig[f"{tag}: best lr"] = tuned.lr
            early[tag] = [_early(r, k) for r in runs]
            fig[f"{tag}: {EARLY}"] = float(np.mean(early[tag]))
            fig[f"{tag}: {EARLY}, spread over seeds"] = spread(early[tag])
            fig[f"{tag}: final loss"] = final_loss(runs)
            flags.update(tuned.flag(f"{tag}: {EARLY}"))
            curves[tag] = runs[0]
        ahead = [
            c < u
            for c, u in zip(
                early[f"beta2={b2} corrected"], early[f"beta2={b2} uncorrected"], strict=True
            )
        ]
        fig[f"beta2={b2}: seeds where corrected training is ahead early"] = float(sum(ahead))
        samples[_shared_effect(b2)] = [
            log_ratio(u, c) for c, u in zip(shared[True], shared[False], strict=True)
        ]
    fig["seeds"] = ctx.seeds
    plt = pyplot()
    f, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    axes[0].semilogx(BETA2S, [fig[_ratio(b)] for b in BETA2S], "o-")
    axes[0].axhline(1.0, color="grey", linestyle=":")
    axes[0].axhline(0.5, color="grey", linestyle="--", linewidth=0.8)
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
    axes[1].set_ylabel("training loss (best lr each, seed 0)")
    axes[1].legend(fontsize=7)
    axes[1].grid(alpha=0.3)
    path = save_figure(ctx, f, "bias-correction")
    return Measurement(
        fig,
        [
            (
                "Left: how large the uncorrected first step is (dashed: half the corrected "
                "one); right: early training on digits with and without correction",
                path,
            )
        ],
        remarks=[
            "Without correction the first step is (1 - beta1) / sqrt(1 - beta2) times the "
            "corrected one: under half only for beta2 < 0.96 (beta1 = 0.9), and too LARGE "
            "at Adam's default 0.999 (the Adam paper's section 6.4 saw instability there).",
            "Early training is compared twice: at one shared lr (the corrected arm's best), "
            "which decides, and with each arm at its own best lr (supporting: a per-arm "
            "tuned lr can absorb what the correction does).",
        ],
        flags=flags,
        samples=samples,
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
        "MLP (mini-batch 64) with and without correction, each at its best lr of the same "
        "grid (chosen by final training loss), over the seeds of the run."
    ),
    statements=(
        Statement(
            "tiny-updates",
            "Without bias correction Adam's first updates are tiny.",
            (
                require(
                    "at the default beta2 = 0.999 the uncorrected first update is under half "
                    "the corrected one",
                    _ratio(0.999),
                    "<",
                    0.5,
                ),
            ),
            Condition(
                "for beta2 <= 0.95 (beta1 = 0.9)",
                inside=(
                    require("under half at beta2 = 0.9", _ratio(0.9), "<", 0.5),
                    require("under half at beta2 = 0.95", _ratio(0.95), "<", 0.5),
                ),
                outside=(require("under half at beta2 = 0.97", _ratio(0.97), "<", 0.5),),
            ),
            exact=True,
        ),
        Statement(
            "early-training",
            "Bias correction is important early in training: with it, training is ahead in "
            "the first steps (default betas).",
            (
                support(
                    "at beta2 = 0.999, each at its own best lr, the corrected loss at 1/6 of "
                    "training is at least 10% below the uncorrected one (mean over seeds)",
                    f"beta2=0.999 corrected: {EARLY}",
                    "<",
                    f"beta2=0.999 uncorrected: {EARLY}",
                    0.9,
                ),
                support(
                    "... in every seed",
                    "beta2=0.999: seeds where corrected training is ahead early",
                    ">=",
                    "seeds",
                ),
            ),
            effect=EffectSpec(
                _shared_effect(0.999),
                math.log(1 / 0.9),
                "at beta2 = 0.999 and one shared lr (the corrected arm's best), log of the "
                "uncorrected training loss at 1/6 of training over the corrected one (log "
                "1/0.9 = 0.105: 10% lower counts)",
            ),
        ),
    ),
    measure=measure_bias,
)
