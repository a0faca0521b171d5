"""Batch GD vs one-sample SGD vs mini-batch: progress per epoch, and per CPU second.

Progress per step is deterministic (seeded runs, the lab's batching and optimizer). Progress
per second also depends on what a step costs, which wall-clock time measures badly on a
shared machine: a busy neighbour stretches whichever arm happens to be running. The cost of
a step is therefore measured as CPU time of the measuring thread (``time.thread_time``), in
short blocks taken round-robin between the arms, with torch on one thread; see
:func:`timing_figures`.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from .. import torch as dt
from ..lab.spec import parse_regime
from ..lab.training import (
    REPRODUCE_EVALUATIONS,
    batch_order,
    diverged,
    eval_every,
    evaluation_due,
)
from ..lab.workloads import WORKLOADS, Problem
from .base import Claim, Context, EffectSpec, Measurement, Statement, support
from .common import Tuned, log_ratio, one_thread, pyplot, save_figure, spread, tune

WORKLOAD = "digits-logreg"
# Every regime gets the same tuning budget: three lrs a factor of 3 apart, around its
# usual scale, widened by ``tune`` (up to three more per side) while the best is at an edge.
GRIDS: dict[str, tuple[float, ...]] = {
    "full": (0.3, 1.0, 3.0),
    "sgd": (0.01, 0.03, 0.1),
    "minibatch:32": (0.1, 0.3, 1.0),
}
NAMES = {"full": "full", "sgd": "sgd", "minibatch:32": "minibatch"}
BATCH: dict[str, int | None] = {"full": None, "sgd": 1, "minibatch:32": 32}
RACE = "loss at equal CPU time"
PER_SECOND = "log(one-sample SGD's loss / mini-batch's) at equal CPU time"


def _epochs(quick: bool) -> int:
    return 2 if quick else 5


# ------------------------------------------------------------------ training and timing


class _Trainer:
    """One regime's training steps on digits-logreg without the lab's bookkeeping (parameter
    copies, norms), which would add a per-step cost that penalizes small batches."""

    def __init__(self, seed: int, batch: int | None, lr: float) -> None:
        self.problem: Problem = WORKLOADS[WORKLOAD].build(seed, {})
        self.opt = dt.SGD(self.problem.params, lr=lr, engine="reference")
        # the lab's mini-batch order (its seed, a fresh permutation each epoch)
        regime = "full" if batch is None else f"minibatch:{batch}"
        self.batches = batch_order(parse_regime(regime), self.problem.n_train, seed)

    def step(self) -> None:
        self.opt.zero_grad()
        self.problem.loss(next(self.batches) if self.batches is not None else None).backward()
        self.opt.step()


def _seconds_per_step(quick: bool) -> dict[str, float]:
    """CPU seconds of the measuring thread per step of each regime: blocks of steps taken
    round-robin (the order alternating each round), so that whatever the rest of the machine
    does falls on every arm alike; the median over rounds."""
    trainers = {r: _Trainer(0, BATCH[r], GRIDS[r][0]) for r in GRIDS}
    rounds, block = (25, 8) if quick else (40, 8)
    per_step: dict[str, list[float]] = {r: [] for r in GRIDS}
    for i in range(rounds + 1):
        order = list(GRIDS) if i % 2 == 0 else list(reversed(GRIDS))
        for regime in order:
            t0 = time.thread_time()
            for _ in range(block):
                trainers[regime].step()
            if i:  # the first round warms up (allocations, caches) and is not counted
                per_step[regime].append((time.thread_time() - t0) / block)
    return {r: float(np.median(v)) for r, v in per_step.items()}


def _curve(regime: str, lr: float, seed: int, steps: int, every: int) -> list[tuple[int, float]]:
    """(step, full training loss) every ``every`` steps and at the end; a non-finite loss
    (a diverged run) ends the curve at inf."""
    trainer = _Trainer(seed, BATCH[regime], lr)
    curve = [(0, trainer.problem.full_loss())]
    for step in range(1, steps + 1):
        trainer.step()
        if evaluation_due(step, steps, every):
            loss = trainer.problem.full_loss()
            # the lab's rule, stopping on overflow only (these curves keep any finite loss)
            if diverged(loss, curve[0][1], factor=math.inf):
                curve.append((step, math.inf))
                break
            curve.append((step, loss))
    return curve


def _tuned(regime: str, steps: int, seeds: int, every: int | None = None) -> Tuned:
    """The regime's lr search by mean full training loss after ``steps`` steps over the seeds
    (the same grid size and widening for every regime); results are the seeds' curves."""

    def evaluate(lr: float) -> tuple[float, list[list[tuple[int, float]]]]:
        curves = [_curve(regime, lr, s, steps, every or steps) for s in range(seeds)]
        finals = [c[-1][1] if c[-1][0] == steps else math.inf for c in curves]
        return float(np.mean(finals)), curves

    return tune(evaluate, GRIDS[regime])


def _steps_per_epoch(regime: str, n: int) -> int:
    """As the lab counts them: ceil(N / B) steps make an epoch, one for batch GD."""
    batch = BATCH[regime]
    return 1 if batch is None else math.ceil(n / batch)


def _n_train() -> int:
    return int(WORKLOADS[WORKLOAD].build(0, {}).n_train or 0)


def timing_figures(quick: bool) -> dict[str, float]:
    """The race at equal CPU time, everything the per-second statement reads.

    The CPU time of a step of each regime is measured round-robin (see
    :func:`_seconds_per_step`); the budget is what mini-batch SGD's epochs cost; each regime
    then takes the number of steps that budget buys it, at the best lr of its grid for that
    many steps (the same budget of lrs for each, widened at an edge), and reports its full
    training loss. Only the step costs depend on the machine, and only through their ratio.
    """
    seeds = 3  # the per-seed effect needs a spread, quick or not
    with one_thread():
        cost = _seconds_per_step(quick)
        mb_steps = _epochs(quick) * _steps_per_epoch("minibatch:32", _n_train())
        budget = mb_steps * cost["minibatch:32"]
        fig: dict[str, float] = {"race: CPU seconds each": budget, "race: seeds": seeds}
        for regime in GRIDS:
            name = NAMES[regime]
            steps = mb_steps if regime == "minibatch:32" else max(1, int(budget / cost[regime]))
            tuned = _tuned(regime, steps, seeds)
            fig[f"race: {name} CPU ms per step"] = cost[regime] * 1e3
            fig[f"race: {name} steps"] = steps
            fig[f"race: {name} best lr"] = tuned.lr
            fig[f"race: {name} best lr at the grid's edge"] = float(tuned.at_edge)
            fig[f"race: {name} {RACE}"] = tuned.scores[tuned.lr]
            for k, curve in enumerate(tuned.best):  # per seed, at the best lr (mean over seeds)
                final = curve[-1][1] if curve[-1][0] == steps else math.inf
                fig[f"race: {name} {RACE}, seed {k}"] = final
    return fig


def per_second(timing: dict[str, float]) -> list[float]:
    """The race's per-seed effect: log(one-sample SGD's loss / mini-batch's)."""
    return [
        log_ratio(
            timing[f"race: sgd {RACE}, seed {k}"], timing[f"race: minibatch {RACE}, seed {k}"]
        )
        for k in range(int(timing["race: seeds"]))
    ]


# ------------------------------------------------------------------ per epoch


def _gradient_noise(batch: int, seed: int, draws: int = 200) -> float:
    """E|g_B - g|^2 / |g|^2 at the initial point of digits-logreg (seed's initialization)."""
    problem = WORKLOADS[WORKLOAD].build(seed, {})
    params, n = problem.params, int(problem.n_train or 0)

    def grad(idx: torch.Tensor | None) -> torch.Tensor:
        for p in params:
            p.grad = None
        problem.loss(idx).backward()
        return torch.cat([p.grad.reshape(-1) for p in params if p.grad is not None]).clone()

    full = grad(None)
    gen = torch.Generator().manual_seed(seed)
    errs = [
        float((grad(torch.randint(0, n, (batch,), generator=gen)) - full).pow(2).sum())
        for _ in range(draws)
    ]
    return float(np.mean(errs)) / float(full.pow(2).sum())


def measure(ctx: Context) -> Measurement:
    epochs = _epochs(ctx.quick)
    fig: dict[str, float] = {"epochs": epochs, "seeds": ctx.seeds}
    flags: dict[str, str] = {}
    curves: dict[str, list[tuple[int, float]]] = {}
    finals: dict[str, list[float]] = {}
    n = _n_train()
    with one_thread():
        for regime in GRIDS:
            steps = epochs * _steps_per_epoch(regime, n)
            tuned = _tuned(regime, steps, ctx.seeds, every=eval_every(steps, REPRODUCE_EVALUATIONS))
            name = NAMES[regime]
            finals[name] = [c[-1][1] if c[-1][0] == steps else math.inf for c in tuned.best]
            fig[f"{name} best lr"] = tuned.lr
            fig[f"{name} updates"] = steps
            fig[f"{name} final loss"] = tuned.scores[tuned.lr]
            fig[f"{name} final loss, spread over seeds"] = spread(finals[name])
            flags.update(tuned.flag(f"{name} final loss"))
            curves[name] = tuned.best[0]
        noise: dict[int, list[float]] = {}
        for batch in (1, 32):
            noise[batch] = [_gradient_noise(batch, seed) for seed in range(ctx.seeds)]
            fig[f"gradient noise B={batch}"] = float(np.mean(noise[batch]))
    samples = {
        NOISIER: [math.log(a / b) for a, b in zip(noise[1], noise[32], strict=True)],
        FASTER: [
            min(log_ratio(f, s), log_ratio(f, m))
            for f, s, m in zip(finals["full"], finals["sgd"], finals["minibatch"], strict=True)
        ],
    }
    fig["seeds where sgd ends below half of batch GD's loss"] = float(
        sum(s < 0.5 * f for s, f in zip(finals["sgd"], finals["full"], strict=True))
    )
    timing = timing_figures(ctx.quick)
    fig.update(timing)
    samples[PER_SECOND] = per_second(timing)
    for name in NAMES.values():
        if timing[f"race: {name} best lr at the grid's edge"]:
            flags[f"race: {name} {RACE}"] = (
                f"its best lr {timing[f'race: {name} best lr']:.3g} is at the edge of its "
                "grid even after widening it"
            )

    plt = pyplot()
    f, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, curve in curves.items():
        steps = int(fig[f"{name} updates"])
        cpu = timing[f"race: {name} CPU ms per step"] / 1e3
        xs = [s / steps * epochs for s, _ in curve]
        ys = [loss for _, loss in curve]
        axes[0].plot(xs, ys, label=name)
        axes[1].plot([max(s, 1) * cpu for s, _ in curve], ys, label=name)
    axes[1].axvline(timing["race: CPU seconds each"], color="grey", linestyle=":")
    axes[1].set_xscale("log")
    for ax, xl in zip(
        axes, ("epochs (samples seen / N)", "CPU seconds (steps x measured cost)"), strict=True
    ):
        ax.set_yscale("log")
        ax.set_xlabel(xl)
        ax.set_ylabel("full training loss")
        ax.legend()
        ax.grid(alpha=0.3)
    f.suptitle("digits logistic regression, SGD at each regime's best lr per epoch (seed 0)")
    path = save_figure(ctx, f, "regimes")
    return Measurement(
        fig,
        [
            (
                "Loss per epoch, and against CPU time (each step at its measured cost; dotted: "
                "the race's budget)",
                path,
            )
        ],
        remarks=[
            "A step's CPU time is mostly fixed overhead on a model this small, so a 32-sample "
            "step costs little more than a one-sample step; the race measures that cost rather "
            "than assuming it."
        ],
        flags=flags,
        samples=samples,
    )


NOISIER = "log of one-sample SGD's gradient noise over a 32-sample mini-batch's"
FASTER = "the smaller of log(batch GD's loss / SGD's) and log(batch GD's loss / mini-batch's)"


CLAIM = Claim(
    key="regimes",
    title="Batch GD, SGD and mini-batch SGD",
    quote=(
        "Batch GD: exact gradient, but requires a full pass over all data before each "
        "update. SGD: very noisy, but one update per sample - much faster per epoch. "
        "Mini-batch SGD (standard in practice) ... B is typically 32-256."
    ),
    experiment=(
        "Logistic regression on scikit-learn's digits (1,438 training samples), plain SGD "
        "in three regimes (batch GD, one sample, mini-batches of 32), the lab's batching and "
        "descentlab's SGD without the lab's per-step bookkeeping. Per epoch: each regime "
        "trains the same number of epochs (2 quick, 5 full) at its best lr by mean final "
        "training loss over the run's seeds, from a grid of three lrs a factor of 3 apart "
        "widened while the best is at an edge (the same budget for each). Per second: the "
        "CPU time of one step of each regime, measured with time.thread_time in blocks of 8 "
        "steps taken round-robin between the regimes (median of the rounds, torch on one "
        "thread), so that load on the machine falls on every arm alike; each regime then "
        "trains for as many steps as mini-batch's epochs cost in CPU time, at its own best "
        "lr for that many steps (same grids and widening). The gradient noise "
        "E|g_B - g|^2/|g|^2 is measured at the start for B = 1 and B = 32."
    ),
    statements=(
        Statement(
            "sgd-noisy",
            "One-sample SGD is very noisy (compared with a mini-batch).",
            (
                support(
                    "its gradient is at least 10x noisier than a 32-sample mini-batch's "
                    "(mean over seeds)",
                    "gradient noise B=1",
                    ">=",
                    "gradient noise B=32",
                    10,
                ),
            ),
            effect=EffectSpec(
                NOISIER,
                math.log(10),
                "log of E|g_B - g|^2/|g|^2 at B = 1 over B = 32, at the start (log 10 = 2.30: "
                "ten times noisier counts as very noisy)",
            ),
        ),
        Statement(
            "faster-per-epoch",
            "SGD (and mini-batch SGD) are much faster per epoch than batch gradient descent.",
            (
                support(
                    "at equal epochs, one-sample SGD ends below half of batch GD's loss "
                    "(mean over seeds)",
                    "sgd final loss",
                    "<",
                    "full final loss",
                    0.5,
                ),
                support(
                    "at equal epochs, mini-batch ends below half of batch GD's loss",
                    "minibatch final loss",
                    "<",
                    "full final loss",
                    0.5,
                ),
                support(
                    "one-sample SGD ends below half of batch GD's loss in every seed",
                    "seeds where sgd ends below half of batch GD's loss",
                    ">=",
                    "seeds",
                ),
                support(
                    "mini-batch nearly matches one-sample SGD per epoch (within 1.25x of its loss)",
                    "minibatch final loss",
                    "<=",
                    "sgd final loss",
                    1.25,
                ),
            ),
            effect=EffectSpec(
                FASTER,
                math.log(2),
                "at equal epochs, each at its best lr, per seed the smaller of log(batch GD's "
                "final loss / one-sample SGD's) and log(batch GD's / mini-batch's) (log 2 = "
                "0.69: half the loss counts as much faster)",
            ),
        ),
        Statement(
            "minibatch-per-second",
            "Mini-batch SGD is the practical choice: per second of computation it trains "
            "faster than one-sample SGD.",
            (
                support(
                    "at equal CPU time (what mini-batch's epochs cost), mini-batch's training "
                    "loss is at least 10% below one-sample SGD's",
                    f"race: minibatch {RACE}",
                    "<",
                    f"race: sgd {RACE}",
                    0.9,
                ),
                support(
                    "at equal CPU time, mini-batch's loss is also below batch GD's",
                    f"race: minibatch {RACE}",
                    "<",
                    f"race: full {RACE}",
                ),
            ),
            effect=EffectSpec(
                PER_SECOND,
                math.log(1 / 0.9),
                "per seed, log(one-sample SGD's training loss / mini-batch's) at equal CPU "
                "time, each at its best lr for the steps that time buys it (log 1/0.9 = "
                "0.105: 10% lower counts)",
            ),
        ),
    ),
    measure=measure,
)
