"""Helpers shared by the experiments: tuned runs through the lab, plots."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..lab import plots
from ..lab.batched import can_batch, run_batched
from ..lab.decide import lowest
from ..lab.runner import run_one
from ..lab.spec import parse_optimizer, parse_regime
from ..lab.training import REPRODUCE_EVALUATIONS, RunSpec, eval_every, steps_for
from ..lab.workloads import WORKLOADS

pyplot = plots.pyplot  # the experiments' plots share the lab's backend set-up


def lab_runs(
    workload: str,
    optimizer: str,
    lrs: Sequence[float],
    seeds: int,
    regime: str,
    epochs: float | None = None,
    steps: int | None = None,
    options: dict[str, Any] | None = None,
) -> dict[float, list[dict[str, Any]]]:
    """Runs of one optimizer over an lr grid and seeds, as lab records (dicts) per lr.

    Trained together as one batched problem where the workload allows it (the records
    equal one-by-one runs to float64 round-off; only their timings are shares of the
    batch's), else one by one."""
    w = WORKLOADS[workload]
    opts = {**w.options, **(options or {})}
    probe = w.build(0, opts)
    reg = parse_regime(regime)
    n_steps = steps_for(w, probe.n_train, reg.batch_size(probe.n_train), epochs, steps)
    specs = [
        RunSpec(
            workload,
            parse_optimizer(optimizer),
            lr,
            seed,
            reg,
            n_steps,
            eval_every(n_steps, REPRODUCE_EVALUATIONS),
            tuple(sorted(opts.items())),
        )
        for lr in lrs
        for seed in range(seeds)
    ]
    if len(specs) > 1 and can_batch(workload, w.build):
        records = run_batched(specs, w.build)
    else:
        records = [run_one(spec, w.build) for spec in specs]
    out: dict[float, list[dict[str, Any]]] = {lr: [] for lr in lrs}
    for spec, record in zip(specs, records, strict=True):
        out[spec.lr].append(asdict(record))
    return out


def final_loss(runs: list[dict[str, Any]]) -> float:
    vals = [r["evals"][-1]["train_loss"] for r in runs if not r["diverged"]]
    return float(np.mean(vals)) if len(vals) == len(runs) else math.inf


def best(by_lr: dict[float, list[dict[str, Any]]]) -> tuple[float, list[dict[str, Any]]]:
    """The lr with the lowest mean final training loss (diverged runs lose; the first of
    exact ties): the lab's choice (:func:`descentlab.lab.decide.lowest`) without its floor."""
    picked = lowest({lr: final_loss(runs) for lr, runs in by_lr.items()})
    if picked is None:
        raise ValueError("no lr to choose from")
    return picked[0], by_lr[picked[0]]


def steps_to(runs: list[dict[str, Any]], target: float) -> float:
    """Median first evaluated step with train loss <= target (inf if never)."""
    hits = []
    for r in runs:
        hit = next((e["step"] for e in r["evals"] if e["train_loss"] <= target), math.inf)
        hits.append(hit)
    return float(np.median(hits))


def metric(runs: list[dict[str, Any]], key: str, agg: str = "last") -> float:
    vals = []
    for r in runs:
        series = [e[key] for e in r["evals"] if key in e and math.isfinite(e[key])]
        if series:
            vals.append(series[-1] if agg == "last" else max(series))
    return float(np.mean(vals)) if vals else math.nan


def save_figure(ctx: Any, figure: Any, name: str) -> Any:
    """Save as ``plots/<name>.png`` in the report folder and close; returns the path."""
    return plots.save_figure(figure, ctx.plot_path(name))


@dataclass
class Tuned:
    """An lr search: every lr tried, its score (lower is better) and what it produced."""

    scores: dict[float, float]
    results: dict[float, Any] = field(default_factory=dict)

    @property
    def lr(self) -> float:
        picked = lowest(self.scores)  # the lab's choice, ties only when exactly equal
        if picked is None:
            raise ValueError("no lr was tried")
        return picked[0]

    @property
    def best(self) -> Any:
        return self.results[self.lr]

    @property
    def at_edge(self) -> bool:
        """Is the best lr the smallest or the largest tried (the optimum not bracketed)?"""
        lrs = sorted(self.scores)
        return len(lrs) > 1 and self.lr in (lrs[0], lrs[-1])

    def flag(self, what: str) -> dict[str, str]:
        """``{what: reason}`` if the optimum is not bracketed, for ``Measurement.flags``."""
        if not self.at_edge:
            return {}
        lrs = sorted(self.scores)
        return {
            what: f"its best lr {self.lr:.3g} is at the edge of the grid "
            f"{lrs[0]:.3g}..{lrs[-1]:.3g} even after widening it"
        }


def tune(
    evaluate: Callable[[float], tuple[float, Any]],
    grid: Sequence[float],
    *,
    widen: int = 3,
) -> Tuned:
    """Evaluate ``evaluate(lr) -> (score, result)`` over a log-spaced ``grid``; while the
    best lr sits at an edge, add the next grid point beyond it (at most ``widen`` per
    side), so that the grid brackets the optimum or the result says it does not."""
    grid = sorted(grid)
    ratio = grid[1] / grid[0] if len(grid) > 1 else 3.0
    out = Tuned({})
    for lr in grid:
        out.scores[lr], out.results[lr] = evaluate(lr)
    for _ in range(widen):
        lrs = sorted(out.scores)
        if not out.at_edge:
            break
        nxt = lrs[0] / ratio if out.lr == lrs[0] else lrs[-1] * ratio
        nxt = float(f"{nxt:.3g}")
        out.scores[nxt], out.results[nxt] = evaluate(nxt)
    return out


def tune_lab(
    workload: str,
    optimizer: str,
    grid: Sequence[float],
    seeds: int,
    regime: str,
    score: Callable[[list[dict[str, Any]]], float] | None = None,
    **kwargs: Any,
) -> Tuned:
    """:func:`tune` over lab runs (``seeds`` runs per lr; the grid's trained as one batch,
    each lr it is widened by as another); the score defaults to the mean final training
    loss (diverged runs lose)."""
    score = score or final_loss
    first = lab_runs(workload, optimizer, list(grid), seeds, regime, **kwargs)  # one batch

    def evaluate(lr: float) -> tuple[float, list[dict[str, Any]]]:
        runs = (
            first[lr]
            if lr in first
            else lab_runs(workload, optimizer, [lr], seeds, regime, **kwargs)[lr]
        )
        return score(runs), runs

    return tune(evaluate, grid)


def log_ratio(a: float, b: float) -> float:
    """``log(a / b)`` of two positive figures (losses, step counts) where an infinite one (a
    diverged run, a target never reached) is the worse: +inf when only ``a`` is infinite,
    -inf when only ``b`` is, nan when both are; a zero (a loss reached exactly) the better.

    >>> log_ratio(2.0, 1.0) == math.log(2), log_ratio(math.inf, 1.0), log_ratio(1.0, math.inf)
    (True, inf, -inf)
    """
    if math.isinf(a) or math.isinf(b):
        return math.nan if a == b else (math.inf if math.isinf(a) else -math.inf)
    if a == 0 or b == 0:  # a loss of exactly zero is the better, without measure
        return math.nan if a == b else (-math.inf if a == 0 else math.inf)
    return math.log(a / b)


def spread(values: Sequence[float]) -> float:
    """The sample standard deviation (0 for a single value)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread (restored afterwards). The experiments are small: a second
    thread buys nothing, and on a loaded machine it makes each step wait for a core."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
