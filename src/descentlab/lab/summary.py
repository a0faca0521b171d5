"""What a sweep's runs measured, per (workload, optimizer, regime, lr), over seeds.

:func:`summarize` turns the runs' records into one line per lr: mean ± std over seeds of
the final and best losses and accuracies, how many seeds diverged and how many reached the
workload's target and when. :func:`load_notes` says when the runs' timings are suspect. The
decisions taken from these lines (the best lr, the verdicts) are :mod:`descentlab.lab.decide`'s.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

Row = dict[str, Any]
Key = tuple[str, str, str]  # workload, optimizer, regime


def finite(xs: Iterable[float | None]) -> list[float]:
    """The finite numbers among ``xs`` (None, NaN and infinities dropped)."""
    return [x for x in xs if x is not None and math.isfinite(x)]


def mean_std(xs: list[float]) -> tuple[float, float]:
    """Mean and population standard deviation (NaN, NaN for no values; std 0 for one)."""
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), statistics.pstdev(xs) if len(xs) > 1 else 0.0


def _to_target(row: Row, target: float | None) -> tuple[int | None, float | None]:
    """First evaluated step (and training CPU seconds) with train loss <= target."""
    if target is None:
        return None, None
    for e in row["evals"]:
        if math.isfinite(e["train_loss"]) and e["train_loss"] <= target:
            step = int(e["step"])
            return step, (row["time"][step - 1] if step > 0 else 0.0)
    return None, None


def _final(row: Row, key: str) -> float:
    """The run's last evaluated ``key`` (NaN when it diverged or never measured it)."""
    if row["diverged"]:
        return math.nan
    if key == "train_loss":  # as the mean over seeds reads it: the last evaluation's
        value = row["evals"][-1].get(key)
        return float(value) if value is not None else math.nan
    values = finite(e.get(key) for e in row["evals"])
    return values[-1] if values else math.nan


def summarize(rows: list[Row], targets: dict[str, float | None]) -> list[Row]:
    """One line per (workload, optimizer, regime, lr): mean +- std over seeds."""
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for r in rows:
        s = r["spec"]
        groups[(s["workload"], s["optimizer"], s["regime"], s["lr"])].append(r)
    out = []
    for (workload, optimizer, regime, lr), runs in groups.items():
        ok = [r for r in runs if not r["diverged"]]
        final = finite(r["evals"][-1]["train_loss"] for r in ok)
        best = finite(
            min(finite(e["train_loss"] for e in r["evals"]), default=math.nan) for r in ok
        )
        runs = sorted(runs, key=lambda r: r["spec"]["seed"])
        line: Row = {
            "workload": workload,
            "optimizer": optimizer,
            "regime": regime,
            "lr": lr,
            "seeds": len(runs),
            "diverged": len(runs) - len(ok),
            "final_loss": mean_std(final),
            "best_loss": mean_std(best),
            "start_loss": mean_std(finite(r["evals"][0]["train_loss"] for r in runs))[0],
            "steps": runs[0]["spec"]["steps"],
            "eval_every": runs[0]["spec"].get("eval_every", 1),
            # Per seed, for the verdicts' paired effects (decide.py): a seed fixes the initial
            # weights and the data order whatever the optimizer. NaN: the run diverged.
            "seed_ids": [r["spec"]["seed"] for r in runs],
            "final_loss_runs": [_final(r, "train_loss") for r in runs],
        }
        accs = [finite(e.get("test_acc") for e in r["evals"]) for r in ok]
        if any(accs):
            line["final_acc"] = mean_std([a[-1] for a in accs if a])
            line["best_acc"] = mean_std([max(a) for a in accs if a])
            line["final_acc_runs"] = [_final(r, "test_acc") for r in runs]
        target = targets.get(workload)
        if target is not None:
            hits = [_to_target(r, target) for r in ok]
            steps = [h[0] for h in hits if h[0] is not None]
            seconds = [h[1] for h in hits if h[1] is not None]
            line["target"] = target
            line["reached"] = len(steps)
            line["steps_to_target"] = statistics.median(steps) if steps else None
            line["seconds_to_target"] = statistics.median(seconds) if seconds else None
            line["steps_to_target_runs"] = steps
            line["steps_to_target_by_seed"] = [
                math.nan if r["diverged"] else _to_target(r, target)[0] for r in runs
            ]
        out.append(line)
    out.sort(key=lambda x: (x["workload"], x["regime"], x["optimizer"], x["lr"]))
    return out


# ---------------------------------------------------------------- timing

TIMING = (
    "Timings are CPU seconds of the process (time.process_time, every thread torch uses), "
    "summed over the training steps: time spent waiting for a CPU on a busy machine does "
    "not count, unlike wall-clock time. Each run records the machine's load average at its "
    "start and end."
)

LOAD_HIGH = 1.0
"""A load average above this many times the CPU count makes timings suspect."""
LOAD_SPREAD = 0.5
"""Runs whose load averages per CPU differ by more than this were timed in unlike conditions."""


def _run_load(row: Row) -> float | None:
    """The highest 1-minute load average per CPU recorded for a run (None: not recorded)."""
    loads = [x[0] for x in (row.get("load"), row.get("load_end")) if x]
    cpus = row.get("cpus") or 0
    if not loads or cpus < 1:
        return None
    return max(loads) / cpus


def load_notes(rows: list[Row]) -> list[str]:
    """Warnings about timings: runs timed on a loaded machine, runs of one sweep timed at
    very different loads (a resumed sweep, say), runs timed in wall-clock seconds."""
    notes = []
    batched = [int(r["batch"]) for r in rows if r.get("batch", 1) > 1]  # absent: alone
    if batched:
        notes.append(
            f"{len(batched)} of {len(rows)} run(s) were trained in batches of up to "
            f"{max(batched)} runs at once (the lrs and seeds of one optimizer, as one "
            "vectorized problem): the time of such a run is its share of its batch's CPU "
            "seconds, not what it takes alone, and shrinks as the batch grows; compare "
            "times of runs trained alike."
        )
    wall = sum(1 for r in rows if r.get("clock") != "process_cpu")
    if wall:
        notes.append(
            f"Warning: {wall} of {len(rows)} run(s) were recorded by an earlier version that "
            "timed wall-clock seconds, not CPU seconds; their timings are not comparable with "
            "the others (train them again in a new folder to compare times)."
        )
    loads = {id(r): _run_load(r) for r in rows}
    known = [r for r in rows if loads[id(r)] is not None]
    if not known:
        return notes
    per_cpu = [loads[id(r)] or 0.0 for r in known]
    cpus = max(int(r["cpus"]) for r in known)
    high = [r for r in known if (loads[id(r)] or 0.0) > LOAD_HIGH]
    if high:
        top = max(max(x[0] for x in (r.get("load"), r.get("load_end")) if x) for r in high)
        notes.append(
            f"Warning: the machine was busy during {len(high)} of {len(known)} run(s) (load "
            f"average up to {top:.1f} on {cpus} CPUs). Timings are CPU seconds, which load "
            "distorts far less than wall time, but contention still slows each step: trust "
            "times only from a sweep on an idle machine."
        )
    if max(per_cpu) - min(per_cpu) > LOAD_SPREAD:
        notes.append(
            f"Warning: runs of this sweep were timed at very different machine loads (load "
            f"average per CPU from {min(per_cpu):.2f} to {max(per_cpu):.2f}, e.g. a sweep "
            "resumed on a machine whose load had changed); compare their times with care."
        )
    return notes
