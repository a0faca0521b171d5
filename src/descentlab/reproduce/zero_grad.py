"""The seed's pitfall "forgetting zero_grad() corrupts the updates", measured on the seed's
own training loop.

Every experiment here that has randomness (initialisation, data, batch order) runs over
several seeds and reports the mean, the spread and, for each comparison, in how many seeds
it goes the stated way. The models are tiny, so they run on one thread: a second one only
adds contention on a shared machine.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch

from .. import torch as dt
from .base import Claim, Context, EffectSpec, Measurement, Statement, require, support
from .common import log_ratio, one_thread, spread
from .seeds import fraction, mean

OPTS: tuple[tuple[str, Callable[[Any], torch.optim.Optimizer]], ...] = (
    ("SGD(0.01, momentum=0.9)", lambda p: dt.SGD(p, lr=0.01, momentum=0.9)),
    ("Adam(1e-3)", lambda p: dt.Adam(p, lr=1e-3)),
)
# the same optimizers at any lr, for the runs to convergence
MAKERS: dict[str, Callable[[float], Callable[[Any], torch.optim.Optimizer]]] = {
    "SGD(0.01, momentum=0.9)": lambda lr: lambda p: dt.SGD(p, lr=lr, momentum=0.9),
    "Adam(1e-3)": lambda lr: lambda p: dt.Adam(p, lr=lr),
}
LRS = {"SGD(0.01, momentum=0.9)": 0.01, "Adam(1e-3)": 1e-3}
ZG_SEEDS = 10  # at least: a full-batch linear model, ten seeds cost milliseconds
# Run to convergence as well: the seed's 50 epochs stop before accumulation shows under Adam
# (its step is normalized), so "it ends worse" is judged after CONVERGE_STEPS full-batch
# steps, at each optimizer's lr and ten times it; the worse-case (smaller) effect decides.
CONVERGE_STEPS = 500
CONVERGE_SEEDS = 5  # at least (more when not resolved): 500 steps of a linear model each
LR_FACTORS = (1.0, 10.0)


def _seed_loop(
    make_opt: Callable[[Any], torch.optim.Optimizer], zero_grad: bool, seed: int, epochs: int = 50
) -> tuple[float, float, float]:
    """The seed's training loop on seed ``seed``'s data and initialisation.

    Returns the final full-batch loss (inf if it diverged), the mean over steps of
    |applied gradient - current gradient| / |current gradient|, and the largest relative
    gap between the applied gradient and the sum of every gradient computed so far.
    """
    torch.manual_seed(seed)
    model = torch.nn.Linear(10, 1)
    x, y = torch.randn(100, 10), torch.randn(100, 1)
    opt = make_opt(model.parameters())
    loss_fn = torch.nn.MSELoss()
    params = list(model.parameters())
    total = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    deviation, gap = [], 0.0
    for _ in range(epochs):
        if zero_grad:
            opt.zero_grad()
        loss = loss_fn(model(x), y)
        current = torch.autograd.grad(loss, params, retain_graph=True)
        loss.backward()
        applied = torch.cat([p.grad.reshape(-1) for p in params if p.grad is not None])
        now = torch.cat([g.reshape(-1) for g in current])
        for t, g in zip(total, current, strict=True):
            t += g.double()
        summed = torch.cat([t.reshape(-1) for t in total])
        deviation.append(float((applied - now).norm() / now.norm()))
        gap = max(gap, float((applied.double() - summed).norm() / summed.norm()))
        opt.step()
    with torch.no_grad():
        final = float(loss_fn(model(x), y))
    return (final if math.isfinite(final) else math.inf), mean(deviation), gap


@functools.lru_cache(maxsize=1024)  # seeds added to an unresolved effect reuse these
def _final_loss(
    make_opt: Callable[[float], Callable[[Any], torch.optim.Optimizer]],
    lr: float,
    zero_grad: bool,
    seed: int,
) -> float:
    """The seed's loop for ``CONVERGE_STEPS`` steps at ``lr``: its final loss (inf if it
    diverged). The same data and initialisation as :func:`_seed_loop` for ``seed``."""
    torch.manual_seed(seed)
    model = torch.nn.Linear(10, 1)
    x, y = torch.randn(100, 10), torch.randn(100, 1)
    opt = make_opt(lr)(model.parameters())
    for _ in range(CONVERGE_STEPS):
        if zero_grad:
            opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    with torch.no_grad():
        final = float(torch.nn.functional.mse_loss(model(x), y))
    return final if math.isfinite(final) else math.inf


def measure_zero_grad(ctx: Context) -> Measurement:
    seeds = max(ctx.seeds, ZG_SEEDS)
    fig: dict[str, float] = {"seeds": seeds}
    samples: dict[str, list[float]] = {}
    with one_thread():
        for name, make in OPTS:
            finals = {}
            for zero in (True, False):
                runs = [_seed_loop(make, zero, seed) for seed in range(seeds)]
                tag = f"{name} {'with' if zero else 'without'} zero_grad"
                finals[zero] = [r[0] for r in runs]
                fig[f"{tag}: final loss"] = mean(finals[zero])
                ok = [v for v in finals[zero] if math.isfinite(v)]
                fig[f"{tag}: final loss, spread over finite seeds"] = spread(ok)
                fig[f"{tag}: seeds diverged"] = len(runs) - len(ok)
                fig[f"{tag}: applied vs current gradient (rel. deviation)"] = mean(
                    [r[1] for r in runs]
                )
                if not zero:
                    fig[f"{tag}: applied vs sum of all gradients so far (rel.)"] = max(
                        r[2] for r in runs
                    )
            n = max(ctx.seeds, CONVERGE_SEEDS)
            per_lr = []
            for factor in LR_FACTORS:
                lr = factor * LRS[name]
                long = {
                    z: [_final_loss(MAKERS[name], lr, z, s) for s in range(n)]
                    for z in (True, False)
                }
                per_lr.append(
                    [log_ratio(b, a) for a, b in zip(long[True], long[False], strict=True)]
                )
                tag = f"{name} at lr {lr:g}, {CONVERGE_STEPS} steps"
                fig[f"{tag}, with zero_grad: final loss"] = mean(long[True])
                fig[f"{tag}, without zero_grad: final loss"] = mean(long[False])
            samples[_worse_effect(name)] = [min(values) for values in zip(*per_lr, strict=True)]
            fig[f"{name}: seeds where forgetting zero_grad ends higher (fraction)"] = fraction(
                [b > a for a, b in zip(finals[True], finals[False], strict=True)]
            )
    return Measurement(
        fig,
        remarks=[
            f"The seed's own loop (nn.Linear(10, 1) on random data, 50 full-batch epochs) with "
            f"its own optimizers, once as written and once without opt.zero_grad(), over "
            f"{seeds} seeds of data and initialisation. At each step the gradient the "
            "optimizer reads (.grad) is compared with the gradient of the current loss alone "
            "and with the sum of all gradients so far. A run that diverges ends at an infinite "
            "loss: the worst outcome."
        ],
        samples=samples,
    )


def _worse_effect(name: str) -> str:
    return f"{name}: log of the final loss without zero_grad over with it, converged, worse lr"


def _accumulates(name: str) -> tuple[Any, ...]:
    return (
        require(
            f"with {name}, the gradient a step reads is the sum of all gradients so far (to "
            "1e-4, relative)",
            f"{name} without zero_grad: applied vs sum of all gradients so far (rel.)",
            "<=",
            1e-4,
        ),
        require(
            f"with {name}, it deviates from the current gradient by at least 50% more than "
            "with zero_grad (mean over steps and seeds)",
            f"{name} without zero_grad: applied vs current gradient (rel. deviation)",
            ">=",
            f"{name} with zero_grad: applied vs current gradient (rel. deviation)",
            offset=0.5,
        ),
    )


def _worse(name: str) -> tuple[Any, ...]:
    return (
        require(
            f"with {name}, forgetting zero_grad ends at least 10% higher (mean over seeds)",
            f"{name} without zero_grad: final loss",
            ">=",
            f"{name} with zero_grad: final loss",
            1.1,
        ),
        require(
            f"with {name}, ... and higher in every seed",
            f"{name}: seeds where forgetting zero_grad ends higher (fraction)",
            ">=",
            1.0,
        ),
    )


CLAIM = Claim(
    key="zero-grad",
    title="Forgetting zero_grad() corrupts the updates",
    quote=(
        "Forgetting optimizer.zero_grad(). In PyTorch, gradients accumulate by default. "
        "Call zero_grad() before each backward pass, or gradients from previous batches "
        "corrupt the update."
    ),
    experiment=(
        f"The seed's training loop with SGD(lr=0.01, momentum=0.9) and Adam(lr=1e-3), with "
        f"and without zero_grad(), over {ZG_SEEDS} seeds: the final loss, and at every step "
        "how far the gradient the optimizer reads is from the current gradient and from the "
        f"sum of all gradients so far; then the same loop run to convergence ({CONVERGE_STEPS} "
        "steps) at each optimizer's lr and at ten times it, with and without zero_grad()."
    ),
    statements=(
        Statement(
            "accumulate",
            "Without zero_grad() gradients accumulate: the update no longer follows the "
            "current gradient.",
            tuple(c for name, _ in OPTS for c in _accumulates(name)),
            exact=True,  # what backward does to .grad, checked to round-off: not a sample
        ),
        *(
            Statement(
                f"corrupts-{name.split('(')[0].lower()}",
                f"... and that corrupts training with {name}: it ends worse.",
                tuple(support(c.text, c.left, c.op, c.right, c.factor) for c in _worse(name)),
                effect=EffectSpec(
                    _worse_effect(name),
                    math.log(1.1),
                    f"with {name}, log of the final loss without zero_grad over the final loss "
                    f"with it after {CONVERGE_STEPS} steps, the smaller of the values at its lr "
                    "and at ten times it (log 1.1 = 0.095: 10% higher counts); the seed's 50 "
                    "epochs are shown as supporting",
                ),
            )
            for name, _ in OPTS
        ),
    ),
    measure=measure_zero_grad,
)
