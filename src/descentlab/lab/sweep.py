"""A sweep: every run of a list of specs, trained once, stored as it finishes, resumable.

This is the one sweep loop of the lab; the executors (:mod:`descentlab.lab.executors`) differ
only in how a run that is not stored yet is trained: here, one by one or an lr x seed grid as
one batch, or sent to :class:`Workers` (a pool of processes, a Ray cluster) while the loop
keeps reading, storing and reporting here. So the contract below holds for every executor:

- the records come back in the order of the specs;
- a run already in ``runs.jsonl`` (:class:`~descentlab.lab.store.Store`) is read back, never
  trained again, and a spec given twice is trained once;
- only this process writes the store, and it appends each finished record as soon as it has
  it (a batch's records together, before the first is reported), so an interrupted sweep
  loses no finished run and resumes where it stopped;
- ``started(spec)`` is called when a run begins (here, or handed to a worker), never for a
  run read back; ``progress(spec, cached)`` once each spec is done, ``cached`` when it was
  read back (a repeat of a spec this sweep trained is reported read back once that run is
  done); both in this process.
"""

from __future__ import annotations

import abc
import collections
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .batched import can_batch, rule_batches, run_batched
from .runner import run_one
from .store import Store
from .training import Record, RunSpec
from .workloads import Problem

Build = Callable[[int, dict[str, Any]], Problem]
Progress = Callable[[RunSpec, bool], None]
Started = Callable[[RunSpec], None]

batched_runs = 0
"""Runs :func:`sweep` trained in batches (``lab.batched.run_batched``) in this process."""


class Workers(abc.ABC):
    """Where a sweep sends runs, one run per task: what a parallel executor provides.

    :func:`sweep` asks :meth:`sends` once for each workload with a run to train, then, if any
    run is to be sent, :meth:`open` once; it keeps at most that many runs in flight with
    :meth:`submit`, collects them with :meth:`ready` and :meth:`result`, and trains the runs
    of a workload that cannot be sent in this process, between the workers' results. When
    the sweep fails or is interrupted it stores the runs still in flight that finish, then
    calls :meth:`abort`.
    """

    @abc.abstractmethod
    def sends(self, workload: str, build: Build) -> bool:
        """Whether runs of ``workload`` can be sent (and get ready what goes with them)."""

    def kept(self, counts: dict[str, int]) -> None:  # noqa: B027 - nothing to note by default
        """The runs to train in this process, per workload whose build cannot be sent; called
        once per sweep, before any run is trained, and only when there are such runs."""

    @abc.abstractmethod
    def open(self, workloads: set[str]) -> int:
        """Start the workers unless started, for runs of ``workloads``; returns how many
        runs may be in flight."""

    @abc.abstractmethod
    def submit(self, spec: RunSpec) -> Any:
        """Start one run on a worker; returns its handle."""

    @abc.abstractmethod
    def ready(self, handles: list[Any], block: bool) -> list[Any]:
        """The handles among ``handles`` that are done, in order; waits for one when
        ``block``."""

    @abc.abstractmethod
    def result(self, handle: Any) -> Record:
        """The record of a finished run (its error raised here)."""

    def abort(self, exc: BaseException) -> None:  # noqa: B027 - no workers to stop by default
        """The sweep stops on ``exc``, its runs in flight stored: stop the workers if they
        cannot go on."""


def sweep(
    specs: list[RunSpec],
    builds: dict[str, Build],
    folder: Path,
    progress: Progress | None = None,
    started: Started | None = None,
    *,
    vectorize: bool = True,
    workers: Workers | None = None,
) -> list[dict[str, Any]]:
    """Run every spec not already in ``folder/runs.jsonl``; returns all their records.

    ``started(spec)`` is called just before a run is trained (never for a run read back),
    ``progress(spec, cached)`` once each run is done, ``cached`` when it was read back. A
    spec is read back when the sweep reaches it (in the order of ``specs``) and finds it
    stored, by this sweep or by another process meanwhile.

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
    one with :func:`~descentlab.lab.runner.run_one`, as with ``vectorize=False``.

    With ``workers``, each run of a workload they can send is trained by a worker, one run
    per task (no batches), at most as many at once as :meth:`Workers.open` says; the runs of
    a workload they cannot send are trained here one by one, between the workers' results.
    A record trained by a worker equals the one trained here but for its timing fields.
    """
    store = Store(folder)
    store.load()
    loop = _Loop(specs, builds, store, progress, started, workers)
    if workers is None and vectorize:
        loop.plan = _batch_plan(specs, builds)
    loop.run()
    return [store.done[spec.id] for spec in specs]


def _no_progress(spec: RunSpec, cached: bool) -> None:
    pass


def _no_start(spec: RunSpec) -> None:
    pass


class _Loop:
    """One sweep's state: the specs to reach here and to send, the runs in flight."""

    def __init__(
        self,
        specs: list[RunSpec],
        builds: dict[str, Build],
        store: Store,
        progress: Progress | None,
        started: Started | None,
        workers: Workers | None,
    ) -> None:
        self.specs, self.builds, self.store, self.workers = specs, builds, store, workers
        self.progress = progress or _no_progress
        self.started = started or _no_start
        self.plan: dict[int, list[int]] = {}  # a batched spec's position: its group's positions
        self.here: collections.deque[int] = collections.deque()  # positions reached here
        self.sent: collections.deque[int] = collections.deque()  # positions sent to workers
        self.trained: set[int] = set()  # positions trained and reported (in a batch)
        self.inflight: dict[Any, RunSpec] = {}  # a worker's handle: its run
        self.waiting: dict[str, list[RunSpec]] = {}  # a run in flight: repeats to report
        self._split()

    def _split(self) -> None:
        """Which specs are reached here, which are sent; a repeat goes where its first does."""
        if self.workers is None:
            self.here.extend(range(len(self.specs)))
            return
        sends: dict[str, bool] = {}
        queue: dict[str, collections.deque[int]] = {}  # a run's id: the queue of its first
        kept: dict[str, int] = {}
        for i, spec in enumerate(self.specs):
            if spec.id in queue:
                queue[spec.id].append(i)
                continue
            if spec.id in self.store.done:  # read back when reached
                self.here.append(i)
                continue
            name = spec.workload
            if name not in sends:
                sends[name] = self.workers.sends(name, self.builds[name])
            queue[spec.id] = self.sent if sends[name] else self.here
            queue[spec.id].append(i)
            if not sends[name]:
                kept[name] = kept.get(name, 0) + 1
        if kept:
            self.workers.kept(kept)

    def run(self) -> None:
        limit = 0
        try:
            if self.sent:
                assert self.workers is not None
                limit = self.workers.open({self.specs[i].workload for i in self.sent})
            while self.here or self.sent or self.inflight:
                while self.sent and len(self.inflight) < limit:
                    self._send()
                if self.here:
                    self._train_here()
                    if self.inflight:
                        self._harvest(block=False)
                elif self.inflight:
                    self._harvest(block=True)
        except BaseException as exc:
            if self.workers is not None:
                try:
                    self._drain()  # keep every run that was already running
                finally:
                    self.workers.abort(exc)
            raise

    def _next(self, queue: collections.deque[int]) -> int | None:
        """The next position of ``queue`` to train; reports the read-backs on the way."""
        while queue:
            i = queue.popleft()
            if i in self.trained:  # trained in the batch of an earlier spec
                continue
            spec = self.specs[i]
            if spec.id in self.waiting:  # its first is in flight: reported when it is done
                self.waiting[spec.id].append(spec)
            elif spec.id in self.store.refresh():  # another process may have run it meanwhile
                self.progress(spec, True)
            else:
                return i
        return None

    def _send(self) -> None:
        i = self._next(self.sent)
        if i is None:
            return
        assert self.workers is not None
        spec = self.specs[i]
        self.started(spec)
        self.waiting[spec.id] = []
        self.inflight[self.workers.submit(spec)] = spec

    def _train_here(self) -> None:
        global batched_runs
        i = self._next(self.here)
        if i is None:
            return
        spec = self.specs[i]
        group = self.plan.get(i)
        if group is None:
            self.started(spec)
            self.store.append(run_one(spec, self.builds[spec.workload]))
            self._done(spec)
            return
        pending = _pending(self.specs, group, i, self.store.done)
        for j in pending:
            self.started(self.specs[j])
        records = run_batched([self.specs[j] for j in pending], self.builds[spec.workload])
        batched_runs += len(records)
        self.store.append_many(records)
        for j in pending:
            self.trained.add(j)
            self._done(self.specs[j])

    def _done(self, spec: RunSpec) -> None:
        self.progress(spec, False)
        for repeat in self.waiting.pop(spec.id, ()):
            self.progress(repeat, True)

    def _harvest(self, block: bool) -> None:
        assert self.workers is not None
        for handle in self.workers.ready(list(self.inflight), block):
            spec = self.inflight.pop(handle)
            self.store.append(self.workers.result(handle))
            self._done(spec)

    def _drain(self) -> None:
        """Wait for the runs still in flight and store those that finish."""
        assert self.workers is not None
        while self.inflight:
            for handle in self.workers.ready(list(self.inflight), True):
                self.inflight.pop(handle)
                try:
                    record = self.workers.result(handle)
                except BaseException:  # the error already being raised is the one to show
                    continue
                self.store.append(record)


def _batch_plan(specs: list[RunSpec], builds: dict[str, Build]) -> dict[int, list[int]]:
    """For each spec trained in a batch (its position in ``specs``), its group's positions."""
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
        if batchable[name] and rule_batches(specs[members[0]].optimizer.name):
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
