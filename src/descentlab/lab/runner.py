"""Running the comparison: optimizers x learning rates x seeds x regimes, resumable.

Every finished run is appended to ``runs.jsonl`` (one JSON object per line, flushed and
fsynced), so an interrupted sweep loses no finished run and resumes where it stopped.
Runs are keyed by a hash of their configuration; the same seed gives the same numbers.

The file is strict JSON: a non-finite number (a diverged loss) is written as the string
``"NaN"``, ``"Infinity"`` or ``"-Infinity"`` and read back as that float. A line that cannot
be read is skipped with one warning, and every other run is kept; the file is never cut.
Appends happen under a lock (``.descentlab.lock`` in the folder), after a fresh look at the
file, so several processes writing into one folder never record a run twice.

Each run's per-step ``time`` and its ``seconds`` are CPU seconds of the process, so a
busy machine slows them far less than wall time; ``wall_seconds`` keeps the wall-clock total,
and ``load``/``load_end`` the machine's load average at the run's start and end. A run
trained in a batch (:func:`sweep` trains the runs of an lr x seed grid together, see
:mod:`descentlab.lab.batched`) records its share of the batch's seconds, and the size of
the batch in ``batch``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: no cross-process lock
    fcntl = None  # type: ignore[assignment]

from .. import torch as dt
from ..guards import decay_split
from ..monitoring import Sample, telemetry
from .errors import LabError
from .spec import OptimizerSpec, Regime
from .workloads import Problem, Workload

DIVERGED_FACTOR = 1e6  # a loss this many times its start (or non-finite) has diverged
CLOCK = "process_cpu"
"""Per-step times are CPU seconds of the process (``time.process_time``, which includes the
threads torch spreads an operation over): time spent waiting for a CPU on a loaded machine
does not count, so load cannot invert rankings."""
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


def machine_load() -> tuple[list[float], int]:
    """The load average over 1, 5 and 15 minutes (empty where unknown) and the CPU count."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # pragma: no cover - not available on this platform
        load = []
    return load, os.cpu_count() or 1


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


def weight_decay(opt: OptimizerSpec) -> float:
    """The weight decay ``opt`` applies: its own setting, else its optimizer's default."""
    value = opt.kwargs().get("weight_decay", _CLASSES[opt.name].info.defaults.get("weight_decay"))
    return float(value or 0.0)


def param_groups(params: list[torch.Tensor], opt: OptimizerSpec) -> list[dict[str, Any]]:
    """The groups the lab trains: with weight decay, biases beside weight matrices get none
    (as ``descentlab.param_groups_for_decay`` does, and as ``descentlab.guard`` advises)."""
    if weight_decay(opt) <= 0:
        return [{"params": params}]
    decay, no_decay = decay_split(params)
    groups: list[dict[str, Any]] = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def run_one(spec: RunSpec, build: Callable[[int, dict[str, Any]], Problem]) -> Record:
    """Train one run; a diverging run stops early and is marked ``diverged``."""
    problem = build(spec.seed, dict(spec.options))
    cls = _CLASSES[spec.optimizer.name]
    groups = param_groups(problem.params, spec.optimizer)
    opt = cls(groups, lr=spec.lr, **spec.optimizer.kwargs(), engine="reference")
    samples: list[Sample] = []  # the last step's, one per group
    telemetry(opt, every=1, on_sample=lambda new: samples.__setitem__(slice(None), new))
    gen = torch.Generator().manual_seed(10_000 + spec.seed)
    batch = spec.regime.batch_size(problem.n_train)
    batches = iter(_batches(problem.n_train, batch, gen)) if batch and problem.n_train else None
    load, cpus = machine_load()
    rec = Record(spec=spec.describe(), id=spec.id, load=load, cpus=cpus)

    def evaluate(step: int) -> None:
        row = {"step": step, "train_loss": problem.full_loss()}
        if problem.evaluate is not None:
            row.update(problem.evaluate())
        rec.evals.append(row)

    evaluate(0)
    if problem.point is not None:
        rec.points.append(problem.point())
    start_loss = abs(rec.evals[0]["train_loss"])
    elapsed = wall = 0.0
    for step in range(1, spec.steps + 1):
        t0, w0 = time.process_time(), time.perf_counter()
        opt.zero_grad()
        loss = problem.loss(next(batches) if batches is not None else None)
        loss.backward()
        opt.step()
        elapsed += time.process_time() - t0
        wall += time.perf_counter() - w0
        value = float(loss.detach())
        rec.loss.append(value)
        rec.lr.append(samples[0].lr)
        rec.grad_norm.append(math.hypot(*(s.grad_norm for s in samples)))
        rec.update_norm.append(math.hypot(*(s.update_norm for s in samples)))
        rec.param_norm.append(math.hypot(*(s.param_norm for s in samples)))
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
    rec.seconds, rec.wall_seconds = elapsed, wall
    rec.load_end = machine_load()[0]
    return rec


_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def to_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``"NaN"``, ``"Infinity"``..."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if _finite_numbers(value):  # a curve: copied as it is, at C speed
            return list(value)
        return [to_json(v) for v in value]
    return value


def from_json(value: Any) -> Any:
    """The inverse of :func:`to_json`."""
    if isinstance(value, str):
        return _NON_FINITE.get(value, value)
    if isinstance(value, dict):
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        if _finite_numbers(value):
            return value
        return [from_json(v) for v in value]
    return value


def _finite_numbers(values: list[Any] | tuple[Any, ...]) -> bool:
    """Whether ``values`` holds only numbers whose sum is finite (then each one is: a NaN
    or an infinity makes the sum NaN or infinite; a string or a container raises)."""
    try:
        return math.isfinite(sum(values, 0.0))
    except TypeError:
        return False


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` shared by every process writing into it."""
    with (folder / ".descentlab.lock").open("a") as f:
        if fcntl is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


class Store:
    """``runs.jsonl`` in the output folder: append-only, one finished run per line."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "runs.jsonl"
        self.done: dict[str, dict[str, Any]] = {}
        self._offset = 0  # bytes of the file already read

    def load(self) -> dict[str, dict[str, Any]]:
        """Finished runs by id, read from the start; unreadable lines are skipped."""
        self.done, self._offset = {}, 0
        return dict(self.refresh())

    def refresh(self) -> dict[str, dict[str, Any]]:
        """Read the lines appended since the last look; returns every finished run by id.

        Only complete lines are read: a line still being written is read next time. A line
        that is not a run record is skipped, and one warning says how many were.
        """
        if not self.path.exists():
            return self.done
        with self.path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        bad = 0
        for line in data[:end].split(b"\n")[:-1]:
            try:
                row = json.loads(line)
                if not isinstance(row, dict) or not isinstance(row.get("id"), str):
                    raise ValueError("not a run record")
                if not isinstance(row.get("spec"), dict):
                    raise ValueError("not a run record")
            except ValueError:
                bad += bool(line.strip())
                continue
            self.done.setdefault(row["id"], from_json(row))  # the first record of a run wins
        if bad:
            warnings.warn(
                f"{self.path}: skipped {bad} unreadable line(s); every other run was kept",
                RuntimeWarning,
                stacklevel=2,
            )
        self._offset += end
        return self.done

    def append(self, record: Record) -> dict[str, Any]:
        """Record a finished run, unless another process recorded it meanwhile."""
        return self.append_many([record])[0]

    def append_many(self, records: list[Record]) -> list[dict[str, Any]]:
        """Record finished runs (each unless another process recorded it meanwhile) under
        one lock and one ``fsync``; their rows, as a later :meth:`load` reads them."""
        texts = [
            json.dumps(to_json({f.name: getattr(r, f.name) for f in fields(r)}), allow_nan=False)
            + "\n"
            for r in records
        ]
        rows: list[dict[str, Any]] = []
        with folder_lock(self.folder):
            done = self.refresh()
            new: dict[str, str] = {}
            for record, text in zip(records, texts, strict=True):
                if record.id not in done and record.id not in new:
                    new[record.id] = text
            if new:
                self._write("".join(new.values()))
            for record, text in zip(records, texts, strict=True):
                row = done.get(record.id)
                if row is None:
                    row = done[record.id] = from_json(json.loads(text))
                rows.append(row)
        return rows

    def _write(self, text: str) -> None:
        """Append complete lines, durably; lines this store wrote are not read back."""
        with self.path.open("a+b") as f:
            end = f.seek(0, os.SEEK_END)
            if end > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a torn line from a killed writer: end it there
                    text = "\n" + text
            f.seek(0, os.SEEK_END)
            data = text.encode("utf-8")
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if end == self._offset:  # nothing unread before them: skip them on the next look
            self._offset = end + len(data)
        else:  # a line ended here, or another process's: read (and report) them now
            self.refresh()


batched_runs = 0
"""Runs :func:`sweep` trained in batches (``lab.batched.run_batched``) in this process."""


def sweep(
    specs: list[RunSpec],
    builds: dict[str, Callable[[int, dict[str, Any]], Problem]],
    folder: Path,
    progress: Callable[[RunSpec, bool], None] = lambda spec, cached: None,
    started: Callable[[RunSpec], None] = lambda spec: None,
    *,
    vectorize: bool = True,
) -> list[dict[str, Any]]:
    """Run every spec not already in ``folder/runs.jsonl``; returns all their records.

    ``started(spec)`` is called just before a run is trained (never for a run read back),
    ``progress(spec, cached)`` once each run is done, ``cached`` when it was read back.

    With ``vectorize`` (the default), the specs that differ only in lr and seed (same
    workload, optimizer, regime, steps, evaluation interval, options and model) form a
    group; a group of two or more specs on a registry workload is trained as one batched
    problem (:func:`descentlab.lab.batched.run_batched`): ``started`` is called for each of
    its runs not yet stored, then, once the batch is done, its records are stored
    together (:meth:`Store.append_many`) and then reported (``progress``) in turn, so an
    interruption loses none of them. Each such run equals ``run_one``'s to float64
    round-off (bit for bit on the 2-D landscapes); its ``time`` and ``seconds`` are its
    share of the batch's, and its ``batch`` field says how many runs were trained
    together. A group is batched whenever the sweep holds two or more of its specs, even
    if only one is left to train (after an interruption), so that a resumed sweep trains
    every run as an uninterrupted one would: a batched run's numbers do not depend on how
    many runs shared its batch. Other runs (a user's model, a lone spec) are trained one by
    one with :func:`run_one`, as with ``vectorize=False``.
    """
    global batched_runs
    store = Store(folder)
    store.load()
    plan = _batch_plan(specs, builds) if vectorize else {}
    rows: list[dict[str, Any] | None] = [None] * len(specs)
    for i, spec in enumerate(specs):
        if rows[i] is not None:  # trained in the batch of an earlier spec
            continue
        row = store.refresh().get(spec.id)  # another process may have run it meanwhile
        if row is not None:
            progress(spec, True)
            rows[i] = row
            continue
        group = plan.get(i)
        if group is None:
            started(spec)
            rows[i] = store.append(run_one(spec, builds[spec.workload]))
            progress(spec, False)
            continue
        pending = _pending(specs, group, i, store.refresh())
        for j in pending:
            started(specs[j])
        records = _run_batched([specs[j] for j in pending], builds[spec.workload])
        batched_runs += len(records)
        for j, row in zip(pending, store.append_many(records), strict=True):
            rows[j] = row
            progress(specs[j], False)
    done = [row for row in rows if row is not None]
    assert len(done) == len(specs), "every spec is trained or read back"
    return done


def _batch_plan(
    specs: list[RunSpec], builds: dict[str, Callable[[int, dict[str, Any]], Problem]]
) -> dict[int, list[int]]:
    """For each spec trained in a batch (its position in ``specs``), its group's positions."""
    from .batched import can_batch

    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, spec in enumerate(specs):
        key = (spec.workload, spec.optimizer, spec.regime, spec.steps, spec.eval_every)
        groups.setdefault((*key, spec.options, spec.fingerprint), []).append(i)
    batchable: dict[str, bool] = {}
    plan: dict[int, list[int]] = {}
    for members in groups.values():
        if len({specs[j].id for j in members}) < 2:
            continue
        name = specs[members[0]].workload
        if name not in batchable:
            batchable[name] = can_batch(name, builds[name])
        if batchable[name]:
            plan.update((j, members) for j in members)
    return plan


def _pending(
    specs: list[RunSpec], group: list[int], first: int, done: dict[str, dict[str, Any]]
) -> list[int]:
    """The positions of the group's specs from ``first`` on still to train, each id once (a
    repeat is read back when the sweep reaches it)."""
    pending, ids = [], set()
    for j in group:
        spec = specs[j]
        if j >= first and spec.id not in done and spec.id not in ids:
            ids.add(spec.id)
            pending.append(j)
    return pending


def _run_batched(
    specs: list[RunSpec], build: Callable[[int, dict[str, Any]], Problem]
) -> list[Record]:
    from .batched import run_batched

    return run_batched(specs, build)


def model_build(
    model: torch.nn.Module, make: Callable[[torch.nn.Module], Problem]
) -> Callable[[int, dict[str, Any]], Problem]:
    """A build function for a user's model: each run starts from a copy of its weights."""

    def build(seed: int, options: dict[str, Any]) -> Problem:
        torch.manual_seed(seed)
        return make(copy.deepcopy(model))

    return build
