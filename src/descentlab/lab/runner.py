"""Running the comparison: optimizers x learning rates x seeds x regimes, resumable.

Every finished run is appended to ``runs.jsonl`` (one JSON object per line, flushed and
fsynced), so an interrupted sweep loses no finished run and resumes where it stopped.
Runs are keyed by a hash of their configuration; the same seed gives the same numbers.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import torch as dt
from .errors import LabError
from .spec import OptimizerSpec, Regime
from .workloads import Problem, Workload

DIVERGED_FACTOR = 1e6  # a loss this many times its start (or non-finite) has diverged
_CLASSES = {c.info.name: c for c in (dt.SGD, dt.Momentum, dt.RMSprop, dt.Adam, dt.AdamW)}


@dataclass(frozen=True)
class RunSpec:
    """One training run; its ``id`` is a hash of everything that affects its numbers."""

    workload: str
    optimizer: OptimizerSpec
    lr: float
    seed: int
    regime: Regime
    steps: int
    eval_every: int
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def id(self) -> str:
        text = json.dumps(self.describe(), sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "options": dict(self.options),
            "optimizer": self.optimizer.label,
            "lr": self.lr,
            "seed": self.seed,
            "regime": self.regime.label,
            "steps": self.steps,
            "eval_every": self.eval_every,
        }


@dataclass
class Record:
    """What one run measured."""

    spec: dict[str, Any]
    id: str
    loss: list[float] = field(default_factory=list)  # the loss of each step's batch
    lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    update_norm: list[float] = field(default_factory=list)
    time: list[float] = field(default_factory=list)  # cumulative seconds of training
    evals: list[dict[str, float]] = field(default_factory=list)  # step, train_loss, test_*
    points: list[tuple[float, float]] = field(default_factory=list)  # 2-D trajectory
    diverged: bool = False
    seconds: float = 0.0


def steps_for(
    workload: Workload, n: int | None, batch: int | None, epochs: float | None, steps: int | None
) -> int:
    """Training steps at equal compute: ``epochs`` passes over the data whatever the batch."""
    if steps is not None:
        return steps
    if n is None or epochs is None:
        if workload.steps is None:
            raise LabError(f"workload {workload.name!r} needs --steps or --epochs")
        return workload.steps
    per_epoch = 1 if batch is None else math.ceil(n / batch)
    return max(1, round(epochs * per_epoch))


def _batches(n: int, batch: int, gen: torch.Generator) -> Iterable[torch.Tensor]:
    """Shuffled mini-batches, a fresh permutation each epoch."""
    while True:
        order = torch.randperm(n, generator=gen)
        for start in range(0, n - batch + 1, batch):
            yield order[start : start + batch]


def _norm(tensors: Iterable[torch.Tensor]) -> float:
    return math.sqrt(sum(float(t.detach().double().pow(2).sum()) for t in tensors))


def run_one(spec: RunSpec, build: Callable[[int, dict[str, Any]], Problem]) -> Record:
    """Train one run; a diverging run stops early and is marked ``diverged``."""
    problem = build(spec.seed, dict(spec.options))
    cls = _CLASSES[spec.optimizer.name]
    opt = cls(problem.params, lr=spec.lr, **spec.optimizer.kwargs(), engine="reference")
    gen = torch.Generator().manual_seed(10_000 + spec.seed)
    batch = spec.regime.batch_size(problem.n_train)
    batches = iter(_batches(problem.n_train, batch, gen)) if batch and problem.n_train else None
    rec = Record(spec=spec.describe(), id=spec.id)

    def evaluate(step: int) -> None:
        row = {"step": step, "train_loss": problem.full_loss()}
        if problem.evaluate is not None:
            row.update(problem.evaluate())
        rec.evals.append(row)

    evaluate(0)
    if problem.point is not None:
        rec.points.append(problem.point())
    start_loss = abs(rec.evals[0]["train_loss"])
    elapsed = 0.0
    for step in range(1, spec.steps + 1):
        t0 = time.perf_counter()
        before = [p.detach().clone() for p in problem.params]
        opt.zero_grad()
        loss = problem.loss(next(batches) if batches is not None else None)
        loss.backward()
        grad_norm = _norm(p.grad for p in problem.params if p.grad is not None)
        opt.step()
        elapsed += time.perf_counter() - t0
        value = float(loss.detach())
        rec.loss.append(value)
        rec.lr.append(float(opt.param_groups[0]["lr"]))
        rec.grad_norm.append(grad_norm)
        rec.update_norm.append(_norm(p - b for p, b in zip(problem.params, before, strict=True)))
        rec.time.append(elapsed)
        if problem.point is not None:
            rec.points.append(problem.point())
        if not math.isfinite(value) or abs(value) > DIVERGED_FACTOR * max(start_loss, 1.0):
            rec.diverged = True
            break
        if step % spec.eval_every == 0 or step == spec.steps:
            evaluate(step)
    if rec.diverged:
        rec.evals.append({"step": len(rec.loss), "train_loss": float("nan")})
    rec.seconds = elapsed
    return rec


class Store:
    """``runs.jsonl`` in the output folder: append-only, one finished run per line."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "runs.jsonl"

    def load(self) -> dict[str, dict[str, Any]]:
        """Finished runs by id; a torn last line (interrupted write) is cut off."""
        if not self.path.exists():
            return {}
        done: dict[str, dict[str, Any]] = {}
        good = 0
        with self.path.open("rb") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    break
                if not line.endswith(b"\n"):
                    break
                done[row["id"]] = row
                good += len(line)
        if good != self.path.stat().st_size:
            with self.path.open("r+b") as f:
                f.truncate(good)
        return done

    def append(self, record: Record) -> dict[str, Any]:
        row = asdict(record)
        line = json.dumps(row, allow_nan=True) + "\n"
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        return row


def sweep(
    specs: list[RunSpec],
    builds: dict[str, Callable[[int, dict[str, Any]], Problem]],
    folder: Path,
    progress: Callable[[RunSpec, bool], None] = lambda spec, cached: None,
) -> list[dict[str, Any]]:
    """Run every spec not already in ``folder/runs.jsonl``; returns all their records."""
    store = Store(folder)
    done = store.load()
    rows = []
    for spec in specs:
        row = done.get(spec.id)
        if row is None:
            row = store.append(run_one(spec, builds[spec.workload]))
            progress(spec, False)
        else:
            progress(spec, True)
        rows.append(row)
    return rows


def model_build(
    model: torch.nn.Module, make: Callable[[torch.nn.Module], Problem]
) -> Callable[[int, dict[str, Any]], Problem]:
    """A build function for a user's model: each run starts from a copy of its weights."""

    def build(seed: int, options: dict[str, Any]) -> Problem:
        torch.manual_seed(seed)
        return make(copy.deepcopy(model))

    return build
