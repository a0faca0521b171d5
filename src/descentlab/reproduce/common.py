"""Helpers shared by the experiments: tuned runs through the lab, plots."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..lab import report
from ..lab.runner import RunSpec, run_one, steps_for
from ..lab.spec import parse_optimizer, parse_regime
from ..lab.workloads import WORKLOADS

pyplot = report.pyplot  # the experiments' plots share the lab's backend set-up


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
    """Runs of one optimizer over an lr grid and seeds, as lab records (dicts) per lr."""
    from dataclasses import asdict

    w = WORKLOADS[workload]
    opts = {**w.options, **(options or {})}
    probe = w.build(0, opts)
    reg = parse_regime(regime)
    n_steps = steps_for(w, probe.n_train, reg.batch_size(probe.n_train), epochs, steps)
    out: dict[float, list[dict[str, Any]]] = {}
    for lr in lrs:
        out[lr] = []
        for seed in range(seeds):
            spec = RunSpec(
                workload,
                parse_optimizer(optimizer),
                lr,
                seed,
                reg,
                n_steps,
                max(1, n_steps // 40),
                tuple(sorted(opts.items())),
            )
            out[lr].append(asdict(run_one(spec, w.build)))
    return out


def final_loss(runs: list[dict[str, Any]]) -> float:
    vals = [r["evals"][-1]["train_loss"] for r in runs if not r["diverged"]]
    return float(np.mean(vals)) if len(vals) == len(runs) else math.inf


def best(by_lr: dict[float, list[dict[str, Any]]]) -> tuple[float, list[dict[str, Any]]]:
    """The lr with the lowest mean final training loss (diverged runs lose)."""
    lr = min(by_lr, key=lambda k: final_loss(by_lr[k]))
    return lr, by_lr[lr]


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
    return report.save_figure(figure, ctx.plot_path(name))
