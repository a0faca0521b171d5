"""The lab's training core: what a run is, and the rules every trainer of the lab follows.

One module decides, for the one-by-one runner (:func:`descentlab.lab.runner.run_one`), the
batched runner (:func:`descentlab.lab.batched.run_batched`) and ``descentlab reproduce``:

* **what a run is**: :class:`RunSpec` (its configuration, hashed into its id) and
  :class:`Record` (what it measured);
* **which optimizer and groups** it trains with: :data:`OPTIMIZERS`, :func:`param_groups`
  (with weight decay, biases get none), :func:`weight_decay`;
* **its data order**: :func:`batch_seed` seeds its mini-batch generator, :func:`minibatches`
  draws from it (a fresh permutation each epoch), :func:`batch_order` puts the two together;
* **when it is evaluated**: every :func:`eval_every` steps and at the end
  (:func:`evaluation_due`), :data:`COMPARE_EVALUATIONS` or :data:`REPRODUCE_EVALUATIONS` times
  a run;
* **when it has diverged**: :func:`diverged`, the one rule;
* **how it is recorded**: :class:`Recorder` appends each step's row and each evaluation, ends
  a diverged run with a NaN evaluation, and stamps the timings and the machine's load.

A trainer computes; this module decides. A change to any of these rules is made here, and
every trainer follows it, so a batched run keeps equalling its one-by-one twin.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import torch as dt
from ..diagnostics.weight_decay import decay_split
from .errors import LabError
from .spec import OptimizerSpec, Regime
from .workloads import Workload

__all__ = [
    "CLOCK",
    "COMPARE_EVALUATIONS",
    "DIVERGED_FACTOR",
    "OPTIMIZERS",
    "REPRODUCE_EVALUATIONS",
    "Record",
    "Recorder",
    "RunSpec",
    "batch_order",
    "batch_seed",
    "diverged",
    "eval_every",
    "evaluation_due",
    "machine_load",
    "minibatches",
    "param_groups",
    "steps_for",
    "weight_decay",
]

OPTIMIZERS = dt.BY_NAME
"""The drop-in optimizer class of each optimizer name the lab trains."""

DIVERGED_FACTOR = 1e6
"""A loss this many times its start (floored, see :func:`diverged`) has diverged."""

COMPARE_EVALUATIONS = 30
"""Evaluations of the full training (and test) loss per run of ``descentlab compare``."""
REPRODUCE_EVALUATIONS = 40
"""Evaluations per run of ``descentlab reproduce``'s experiments (denser curves)."""

CLOCK = "process_cpu"
"""Per-step times are CPU seconds of the process (``time.process_time``, which includes the
threads torch spreads an operation over): time spent waiting for a CPU on a loaded machine
does not count, so load cannot invert rankings."""

BATCH_SEED_OFFSET = 10_000
"""Mini-batch generators are seeded apart from the weights' ``torch.manual_seed(seed)``."""


# ---------------------------------------------------------------- the rules


def diverged(
    loss: float, start_loss: float, *, factor: float = DIVERGED_FACTOR, floor: float = 1.0
) -> bool:
    """Whether a run whose loss started at ``start_loss`` has diverged at ``loss``: the loss
    is not finite, or exceeds ``factor`` times ``max(|start_loss|, floor)``.

    The ``floor`` keeps a run that starts near a loss of 0 from "diverging" by growing a
    little: started at 1e-3, it has diverged only beyond 1e6, not beyond 1e3. A caller
    whose losses are relative to their start (a ratio, whatever the scale) passes
    ``floor=0``; one that only stops on overflow passes ``factor=math.inf``.

    >>> diverged(1e5, 1e-3), diverged(1e5, 1e-3, floor=0.0), diverged(float("nan"), 1.0)
    (False, True, True)
    """
    return not math.isfinite(loss) or abs(loss) > factor * max(abs(start_loss), floor)


def batch_seed(seed: int) -> int:
    """The seed of run ``seed``'s mini-batch order (its weights are drawn with ``seed``).

    >>> batch_seed(3)
    10003
    """
    return BATCH_SEED_OFFSET + seed


def minibatches(n: int, batch: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled mini-batches of ``batch`` of ``n`` sample indices, a fresh permutation each
    epoch (its last partial batch dropped), drawn from ``gen`` as they are needed."""
    while True:
        order = torch.randperm(n, generator=gen)
        for start in range(0, n - batch + 1, batch):
            yield order[start : start + batch]


def batch_order(regime: Regime, n_train: int | None, seed: int) -> Iterator[torch.Tensor] | None:
    """Run ``seed``'s mini-batches under ``regime`` (None: it trains on the full set)."""
    batch = regime.batch_size(n_train)
    if not batch or not n_train:
        return None
    return iter(minibatches(n_train, batch, torch.Generator().manual_seed(batch_seed(seed))))


def eval_every(steps: int, evaluations: int) -> int:
    """The interval that evaluates a run of ``steps`` steps about ``evaluations`` times.

    >>> eval_every(300, COMPARE_EVALUATIONS), eval_every(10, REPRODUCE_EVALUATIONS)
    (10, 1)
    """
    return max(1, steps // evaluations)


def evaluation_due(step: int, steps: int, every: int) -> bool:
    """Whether a run of ``steps`` steps is evaluated after step ``step``: every ``every``
    steps, and after its last."""
    return step % every == 0 or step == steps


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


def weight_decay(opt: OptimizerSpec) -> float:
    """The weight decay ``opt`` applies: its own setting, else its optimizer's default."""
    value = opt.kwargs().get("weight_decay", OPTIMIZERS[opt.name].info.defaults.get("weight_decay"))
    return float(value or 0.0)


def param_groups(params: list[torch.Tensor], opt: OptimizerSpec) -> list[dict[str, Any]]:
    """The groups the lab trains: with weight decay, biases beside weight matrices get none
    (as ``descentlab.param_groups_for_decay`` does, and as ``descentlab.guard`` advises)."""
    if weight_decay(opt) <= 0:
        return [{"params": params}]
    decay, no_decay = decay_split(params)
    groups: list[dict[str, Any]] = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def machine_load() -> tuple[list[float], int]:
    """The load average over 1, 5 and 15 minutes (empty where unknown) and the CPU count."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # pragma: no cover - not available on this platform
        load = []
    return load, os.cpu_count() or 1


# ---------------------------------------------------------------- a run and its record


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
    fingerprint: str = ""  # a user model's architecture, initial weights and data

    @property
    def id(self) -> str:
        text = json.dumps(self.describe(), sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "workload": self.workload,
            "options": dict(self.options),
            "optimizer": self.optimizer.label,
            "lr": self.lr,
            "seed": self.seed,
            "regime": self.regime.label,
            "steps": self.steps,
            "eval_every": self.eval_every,
        }
        if self.fingerprint:  # absent for registry workloads, so their ids stay as they were
            described["fingerprint"] = self.fingerprint
        if weight_decay(self.optimizer) > 0:  # biases and norms are not decayed (since 0.2)
            described["decay"] = "weights only"
        return described


@dataclass
class Record:
    """What one run measured."""

    spec: dict[str, Any]
    id: str
    loss: list[float] = field(default_factory=list)  # the loss of each step's batch
    lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)  # ||g|| the step read
    update_norm: list[float] = field(default_factory=list)  # ||w_t - w_{t-1}||
    param_norm: list[float] = field(default_factory=list)  # ||w_{t-1}|| (absent: older runs)
    time: list[float] = field(default_factory=list)  # cumulative CPU seconds of training
    evals: list[dict[str, float]] = field(default_factory=list)  # step, train_loss, test_*
    points: list[tuple[float, float]] = field(default_factory=list)  # 2-D trajectory
    diverged: bool = False
    seconds: float = 0.0  # CPU seconds of the process over the training steps
    wall_seconds: float = 0.0  # wall-clock seconds over the same steps (varies with load)
    clock: str = CLOCK  # what ``time`` and ``seconds`` measure
    load: list[float] = field(default_factory=list)  # load average (1, 5, 15 min) at start
    load_end: list[float] = field(default_factory=list)  # and at the end of the run
    cpus: int = 0  # logical CPUs of the machine
    # Runs trained together (``lab.batched``): then ``time``, ``seconds`` and ``wall_seconds``
    # are this run's share, 1/batch, of the batch's. 1 (a run alone) where absent (older runs).
    batch: int = 1


class Recorder:
    """One run's :class:`Record` as it trains, kept by the rules above.

    A trainer calls :meth:`begin` with the evaluation before the first step, :meth:`step`
    after each step (which says whether to evaluate now and whether the run is over),
    :meth:`evaluated` with each evaluation it was asked for, and :meth:`finish` at the end.
    ``batch``: how many runs were trained together (see :attr:`Record.batch`).
    """

    def __init__(
        self, spec: RunSpec, load: list[float] | None = None, cpus: int = 0, batch: int = 1
    ) -> None:
        if load is None:
            load, cpus = machine_load()
        self.spec = spec
        self.record = Record(spec=spec.describe(), id=spec.id, load=load, cpus=cpus, batch=batch)
        self.start_loss = math.nan

    def begin(self, evaluation: dict[str, float], point: tuple[float, float] | None) -> None:
        """The evaluation at step 0 (``train_loss`` first), and the start point (2-D)."""
        self.evaluated(evaluation)
        if point is not None:
            self.record.points.append(point)
        self.start_loss = abs(evaluation["train_loss"])

    def step(
        self,
        loss: float,
        lr: float,
        norms: tuple[float, float, float],
        elapsed: float,
        point: tuple[float, float] | None,
    ) -> tuple[bool, bool]:
        """Record a step; returns (evaluate now, the run is over).

        ``loss`` is the step's batch loss, ``norms`` its gradient, update and (previous)
        weight norms, ``elapsed`` the run's training seconds so far, ``point`` the position
        after the step (2-D landscapes). A diverged run is over, and not evaluated.
        """
        rec = self.record
        rec.loss.append(loss)
        rec.lr.append(lr)
        rec.grad_norm.append(norms[0])
        rec.update_norm.append(norms[1])
        rec.param_norm.append(norms[2])
        rec.time.append(elapsed)
        if point is not None:
            rec.points.append(point)
        if diverged(loss, self.start_loss):
            rec.diverged = True
            return False, True
        step = len(rec.loss)
        last = step == self.spec.steps
        return evaluation_due(step, self.spec.steps, self.spec.eval_every), last

    def evaluated(self, evaluation: dict[str, float]) -> None:
        """An evaluation after the steps recorded so far (``train_loss``, ``test_*``...)."""
        self.record.evals.append({"step": len(self.record.loss), **evaluation})

    def finish(self, seconds: float, wall_seconds: float) -> Record:
        """The record: a diverged run ends with a NaN evaluation where it stopped."""
        rec = self.record
        if rec.diverged:
            rec.evals.append({"step": len(rec.loss), "train_loss": float("nan")})
        rec.seconds, rec.wall_seconds = seconds, wall_seconds
        rec.load_end = machine_load()[0]
        return rec
