"""The seed's pitfall "Adam's 1e-3 is too aggressive for fine-tuning", measured.

The setup gives the claim a fair chance to show:

* **A related task whose features transfer.** Pre-train on the digits, then fine-tune on
  the same ten digits as a noisy scanner would give them (each pixel plus Gaussian noise,
  sigma 0.35, clipped to [0, 1]) from only 5 examples a class. The pre-trained model
  already reads noisy digits far better than one trained on those 50 examples from scratch
  (shown), so fine-tuning, not training anew, is the sensible thing to do.
* **Budgets long enough to converge, per lr.** Every lr (1e-3, 1e-4, 1e-5) fine-tunes for
  the same long budget and is read at its own best checkpoint on a validation set of noisy
  digits it does not train on (early stopping), so a small lr is not cut short; an lr whose
  validation loss still fell in the last quarter of the budget by a tenth or more of all it
  fell has not converged, and a statement about it is not tested.
* **What is forgotten** is the original (clean) task's test accuracy lost at that
  checkpoint; the end of the common budget is shown beside it.

All seeds and lrs train together as one stacked problem (:func:`.digits.stacked_forward`):
each row is one (lr, seed) run with its own initialisation, data and batch order; rows never
mix. A seed's results depend on the seed alone, so seeds added to an unresolved statement
reuse those already run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .. import torch as dt
from ..lab.workloads import digits_data
from .base import Claim, Context, EffectSpec, Measurement, Statement, require, support
from .common import one_thread, pyplot, save_figure, spread
from .digits import stacked_forward
from .seeds import fraction, mean

Tensor = torch.Tensor

FT_LRS = (1e-3, 1e-4, 1e-5)
HIDDEN = 64
PRETRAIN_STEPS = 1500
BUDGET = 2000  # fine-tuning steps for every lr, read at each run's best checkpoint
CONVERGED = 0.1  # the share of the validation loss's fall left to the last quarter
# checkpoints: dense early (a large lr may peak within tens of steps), then every 100
CHECKPOINTS = frozenset((25, 50, 75, *range(100, BUDGET + 1, 100)))
PER_CLASS = 5  # fine-tuning examples a class
VALIDATION = 500  # noisy training digits that choose the checkpoint
NOISE = 0.35
BATCH = 32
SCRATCH = "from scratch at 1e-3"  # the same 50 examples, no pre-training


def _template() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(64, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 10)
    )


def _init(seeds: Sequence[int]) -> Tensor:
    rows = []
    for seed in seeds:
        torch.manual_seed(seed)
        rows.append(torch.nn.utils.parameters_to_vector(_template().parameters()))
    return torch.stack(rows).detach()


def noisy(x: Tensor, seed: int) -> Tensor:
    """The related task's inputs: the digits as a noisy scanner gives them (fixed noise)."""
    gen = torch.Generator().manual_seed(seed)
    return (x + NOISE * torch.randn(x.shape, generator=gen)).clamp(0.0, 1.0)


@dataclass(frozen=True)
class SeedRun:
    """One seed: the pre-trained model's accuracies, and per fine-tuning arm its accuracies
    at its best checkpoint and at the end of the budget."""

    clean: float  # pre-trained, original task (clean test digits)
    noisy: float  # pre-trained, new task (noisy test digits)
    best_step: dict[str, int]
    new_task: dict[str, float]  # noisy test accuracy at the best checkpoint
    kept: dict[str, float]  # clean test accuracy at the best checkpoint
    kept_at_end: dict[str, float]  # clean test accuracy after the whole budget
    converged: dict[str, bool]  # the last quarter brought < CONVERGED of the val loss's fall


_RUNS: dict[int, SeedRun] = {}


def _arms() -> list[tuple[str, float, bool]]:
    """(name, lr, from the pre-trained weights)."""
    return [*((f"{lr:g}", lr, True) for lr in FT_LRS), (SCRATCH, 1e-3, False)]


def _accuracy(flat: Tensor, x: Tensor, y: Tensor, template: torch.nn.Module) -> Tensor:
    with torch.no_grad():
        out = stacked_forward(template, flat, x.expand(len(flat), -1, -1))
        return (out.argmax(-1) == y).float().mean(1)


def _run(seeds: Sequence[int]) -> None:
    """Measure ``seeds`` (all arms stacked) into ``_RUNS``."""
    xtr, ytr, xte, yte = (torch.from_numpy(a) for a in digits_data())
    xtr, xte, ytr, yte = xtr.float(), xte.float(), ytr.long(), yte.long()
    ntr, nte = noisy(xtr, 1), noisy(xte, 2)
    template = _template()
    n = len(seeds)
    w0 = _init(seeds)
    flat = w0.clone().requires_grad_()
    opt = dt.Adam([flat], lr=1e-3, engine="reference")
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    for _ in range(PRETRAIN_STEPS):  # the original task, clean digits
        idx = torch.stack([torch.randint(0, len(xtr), (BATCH,), generator=g) for g in gens])
        opt.zero_grad()
        out = stacked_forward(template, flat, xtr[idx])
        loss = torch.nn.functional.cross_entropy(
            out.flatten(0, 1), ytr[idx].flatten(), reduction="sum"
        )
        (loss / BATCH).backward()
        opt.step()
    base = flat.detach()
    clean0 = _accuracy(base, xte, yte, template)
    noisy0 = _accuracy(base, nte, yte, template)
    picks, checks = [], []
    for s in seeds:  # per seed: 5 noisy training digits a class; others validate
        perm = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(1000 + s))
        pick = torch.cat([perm[ytr[perm] == c][:PER_CLASS] for c in range(10)])
        picks.append(pick)
        checks.append(perm[~torch.isin(perm, pick)][:VALIDATION])
    pick_t, check_t = torch.stack(picks), torch.stack(checks)
    arms = _arms()
    flats = [(base if pre else w0).clone().requires_grad_() for _, _, pre in arms]
    opt = dt.Adam(
        [{"params": [f], "lr": lr} for f, (_, lr, _) in zip(flats, arms, strict=True)],
        engine="reference",
    )
    gens = [torch.Generator().manual_seed(2000 + s) for s in seeds]
    k = len(arms)
    xv, yv = ntr[check_t].repeat(k, 1, 1), ytr[check_t].repeat(k, 1)
    best = torch.full((k, n), math.inf)  # the lowest validation loss so far
    best_step = torch.zeros((k, n), dtype=torch.long)
    at_best_new, at_best_kept = torch.zeros((k, n)), torch.zeros((k, n))

    def validation_loss() -> Tensor:
        with torch.no_grad():
            out = stacked_forward(template, torch.cat(flats), xv)
            losses = torch.nn.functional.cross_entropy(
                out.flatten(0, 1), yv.flatten(), reduction="none"
            )
            return losses.view(k * n, -1).mean(1).view(k, n)

    start = validation_loss()
    early = start  # the lowest validation loss before the budget's last quarter
    for step in range(1, BUDGET + 1):
        pos = torch.stack([torch.randint(0, 10 * PER_CLASS, (BATCH,), generator=g) for g in gens])
        idx = pick_t.gather(1, pos).repeat(k, 1)  # arm-major rows, each seed its own batch
        opt.zero_grad()
        out = stacked_forward(template, torch.cat(flats), ntr[idx])
        loss = torch.nn.functional.cross_entropy(
            out.flatten(0, 1), ytr[idx].flatten(), reduction="sum"
        )
        (loss / BATCH).backward()  # each row's gradient is its own run's mean loss's
        opt.step()
        if step not in CHECKPOINTS:
            continue
        val = validation_loss()  # early stopping on the validation loss
        better = val < best
        if better.any():
            rows = torch.cat(flats).detach()
            best = torch.where(better, val, best)
            best_step = torch.where(better, torch.full_like(best_step, step), best_step)
            new = _accuracy(rows, nte, yte, template).view(k, n)
            kept = _accuracy(rows, xte, yte, template).view(k, n)
            at_best_new = torch.where(better, new, at_best_new)
            at_best_kept = torch.where(better, kept, at_best_kept)
        if step <= BUDGET * 3 // 4:
            early = best
    end_kept = _accuracy(torch.cat(flats).detach(), xte, yte, template).view(k, n)
    # converged: the budget's last quarter lowered the validation loss by under CONVERGED of
    # all it lowered it (a run that barely moved is still descending: not converged)
    settled = (early - best) <= CONVERGED * (start - best)
    names = [name for name, _, _ in arms]
    for j, seed in enumerate(seeds):
        _RUNS[seed] = SeedRun(
            float(clean0[j]),
            float(noisy0[j]),
            {a: int(best_step[i, j]) for i, a in enumerate(names)},
            {a: float(at_best_new[i, j]) for i, a in enumerate(names)},
            {a: float(at_best_kept[i, j]) for i, a in enumerate(names)},
            {a: float(end_kept[i, j]) for i, a in enumerate(names)},
            {a: bool(settled[i, j]) for i, a in enumerate(names)},
        )


def _ft(lr: float, what: str) -> str:
    return f"lr={lr:g}: {what}"


def measure_finetune(ctx: Context) -> Measurement:
    seeds = list(range(max(ctx.seeds, 3)))  # a second or two each: a spread even when quick
    missing = [s for s in seeds if s not in _RUNS]
    if missing:
        with one_thread():
            _run(missing)
    runs = [_RUNS[s] for s in seeds]
    clean0, noisy0 = [r.clean for r in runs], [r.noisy for r in runs]
    fig: dict[str, float] = {
        "seeds": float(len(seeds)),
        "pre-trained: original-task accuracy": mean(clean0),
        "pre-trained: new-task accuracy": mean(noisy0),
    }
    lost: dict[str, list[float]] = {}
    new: dict[str, list[float]] = {}
    rows = []
    for name, lr, pre in _arms():
        new[name] = [r.new_task[name] for r in runs]
        steps = [r.best_step[name] for r in runs]
        label = f"lr={lr:g}" if pre else SCRATCH
        fig[f"{label}: new-task accuracy"] = mean(new[name])
        fig[f"{label}: new-task accuracy, spread over seeds"] = spread(new[name])
        fig[f"{label}: seeds converged within the budget"] = float(
            sum(r.converged[name] for r in runs)
        )
        if pre:
            lost[name] = [100 * (c - r.kept[name]) for c, r in zip(clean0, runs, strict=True)]
            at_end = [100 * (c - r.kept_at_end[name]) for c, r in zip(clean0, runs, strict=True)]
            fig[_ft(lr, "original-task points lost at the best checkpoint")] = mean(lost[name])
            fig[_ft(lr, "original-task points lost after the whole budget")] = mean(at_end)
        rows.append(
            [
                label,
                f"{np.median(steps):.0f}",
                f"{mean(new[name]):.3f} ± {spread(new[name]):.3f}",
                f"{mean(lost[name]):.1f}" if pre else "-",
                f"{mean(at_end):.1f}" if pre else "-",
            ]
        )
    best_pre = [max(new[f"{lr:g}"][k] for lr in FT_LRS) for k in range(len(seeds))]
    fig["transfer: best fine-tuned minus from-scratch new-task accuracy (points)"] = 100 * (
        mean(best_pre) - mean(new[SCRATCH])
    )
    fig["seeds where 1e-3 loses more of the original task than 1e-4 (fraction)"] = fraction(
        [a > b for a, b in zip(lost["0.001"], lost["0.0001"], strict=True)]
    )
    samples = {
        TOO_AGGRESSIVE: [a - b for a, b in zip(lost["0.001"], lost["0.0001"], strict=True)],
        **{
            _suffices_effect(lr): [
                100 * (a - b) + 2 for a, b in zip(new[f"{lr:g}"], best_pre, strict=True)
            ]
            for lr in (1e-4, 1e-5)
        },
    }
    plt = pyplot()
    f, ax = plt.subplots(figsize=(5, 3.6))
    for lr in FT_LRS:
        ax.scatter(
            [100 * v for v in new[f"{lr:g}"]], lost[f"{lr:g}"], label=f"fine-tuned at {lr:g}"
        )
    ax.axvline(100 * mean(new[SCRATCH]), color="grey", linestyle=":", label=SCRATCH)
    ax.set_xlabel("new task (noisy digits) test accuracy, % at the best checkpoint")
    ax.set_ylabel("original task points lost")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    path = save_figure(ctx, f, "finetune-lr")
    return Measurement(
        fig,
        [("Each seed's fine-tuning run: what the new task gains against what is lost", path)],
        table=(
            [
                "fine-tuning",
                "best checkpoint (median step)",
                "new task acc",
                "original points lost",
                "lost after the whole budget",
            ],
            rows,
        ),
        remarks=[
            f"Pre-train an MLP 64-{HIDDEN}-10 on the clean digits with Adam at 1e-3 "
            f"({PRETRAIN_STEPS} steps of {BATCH}), then fine-tune all its weights on "
            f"{PER_CLASS} noisy digits a class ({BATCH} a step) at Adam 1e-3, 1e-4 or 1e-5, "
            f"{BUDGET} steps each, read at the checkpoint (at 25, 50, 75 steps, then every 100) "
            f"with the lowest loss on {VALIDATION} other noisy training digits; {len(seeds)} seeds "
            "(initialisation, batches, the fine-tuning examples). Accuracies on the held-out "
            "test digits, clean (original task) and noisy (new task). The seed's advice is "
            "about large pre-trained models; this is a small one, so read the verdicts as "
            "what happens at this scale."
        ],
        samples=samples,
    )


TOO_AGGRESSIVE = "original-task points lost at 1e-3 minus at 1e-4, each at its best checkpoint"


def _suffices_effect(lr: float) -> str:
    return f"lr={lr:g}: new-task accuracy minus the best lr's, plus 2 (points)"


def _suffices(lr: float) -> Statement:
    tag = f"{lr:.0e}".replace("e-0", "e-")
    return Statement(
        f"{tag}-suffices",
        f"{tag} is enough to learn the new task.",
        (
            require(
                f"fine-tuning at {tag} converges within the budget in every seed (the last "
                "quarter brings under a tenth of its validation loss's fall)",
                _ft(lr, "seeds converged within the budget"),
                ">=",
                "seeds",
            ),
            support(
                f"{tag} learns the new task to within 2 points of 1e-3 (mean over seeds)",
                _ft(lr, "new-task accuracy"),
                ">=",
                _ft(1e-3, "new-task accuracy"),
                offset=-0.02,
            ),
            support(
                f"at {tag} the new task's accuracy rises above the pre-trained model's",
                _ft(lr, "new-task accuracy"),
                ">",
                "pre-trained: new-task accuracy",
            ),
        ),
        effect=EffectSpec(
            _suffices_effect(lr),
            0.0,
            f"per seed, the new task's accuracy at {tag} minus the best of the three lrs', "
            "plus 2 points: positive when it learns the new task to within 2 points of the "
            "best lr (each at its best checkpoint)",
            " pts",
        ),
    )


CLAIM = Claim(
    key="finetune-lr",
    title="Adam's 1e-3 is too aggressive for fine-tuning",
    quote=(
        "Using Adam's default learning rate for fine-tuning large models. 1e-3 is too "
        "aggressive for fine-tuning - use 1e-5 or 1e-4."
    ),
    experiment=(
        "Pre-train an MLP on the clean digits; fine-tune it on a related task whose features "
        f"transfer (the digits with pixel noise, {PER_CLASS} examples a class) at Adam lr "
        f"1e-3 / 1e-4 / 1e-5, {BUDGET} steps each, each read at its best validation "
        "checkpoint; measure on held-out digits what the original task loses and what the "
        "new task gains, against a model trained on the same examples from scratch."
    ),
    statements=(
        Statement(
            "too-aggressive",
            "Adam's default lr 1e-3 is too aggressive for fine-tuning (it destroys what "
            "pre-training learned).",
            (
                require(
                    "fine-tuning at 1e-4 converges within the budget in every seed",
                    _ft(1e-4, "seeds converged within the budget"),
                    ">=",
                    "seeds",
                ),
                support(
                    "pre-trained features transfer: the best fine-tuned model beats training "
                    "from scratch on the new task by at least 5 points",
                    "transfer: best fine-tuned minus from-scratch new-task accuracy (points)",
                    ">=",
                    5.0,
                ),
                support(
                    "... and after the whole budget, 1e-3 has lost at least 5 points more "
                    "than 1e-4",
                    _ft(1e-3, "original-task points lost after the whole budget"),
                    ">=",
                    _ft(1e-4, "original-task points lost after the whole budget"),
                    offset=5.0,
                ),
            ),
            effect=EffectSpec(
                TOO_AGGRESSIVE,
                5.0,
                "per seed, the original task's test accuracy lost at 1e-3 minus lost at "
                "1e-4, each at its best checkpoint (5 points count: destroying, not nudging)",
                " pts",
            ),
        ),
        _suffices(1e-4),
        _suffices(1e-5),
    ),
    measure=measure_finetune,
)
