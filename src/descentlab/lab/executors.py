"""Where a sweep's runs are trained: in this process, in a pool of processes, or on Ray.

Every executor runs the one sweep loop, :func:`descentlab.lab.sweep.sweep`, and keeps its
contract; they differ only in how a run not yet stored is trained. The records come back
in the order of the specs, runs already in ``runs.jsonl`` are read back (never trained again),
and the callbacks ``started(spec)`` and ``progress(spec, cached)`` are called in this process.
Only the parent process writes the store, and it appends each finished record as soon as it
has it, so an interrupted parallel sweep loses no finished run and resumes where it stopped.

A run is deterministic given its spec (the seeds are in it), so a record trained by a worker
equals the one trained one by one here except for its timing fields (``time``, ``seconds``,
``wall_seconds``, ``load``, ``load_end``, ``cpus``). The in-process executor trains the runs
of an lr x seed grid together by default (``lab.sweep.sweep``'s ``vectorize``): their records
equal those to float64 round-off (bit for bit on the 2-D landscapes), and their ``batch``
field says how many runs were trained together. The pool and Ray executors train one run
per task, one by one.

What is sent to a worker is the :class:`~descentlab.lab.training.RunSpec`; the worker rebuilds a
registered workload by name with :func:`~descentlab.lab.workloads.get_workload`, with torch
held to one thread so that K workers use K CPUs. Another build function goes along with it
when it can be serialized: with :mod:`pickle` for the pool (a module-level function, not a
closure), with cloudpickle for Ray (closures too, such as the build of a user's model, with
the model and its data; Ray's object store holds one copy per sweep). A build that cannot be
sent is trained in this process, between the workers' results, and :attr:`Executor.notes`
says which.

>>> executor_from("pool", 2, None)
PoolExecutor(jobs=2)
>>> executor_from("thread", None, None)
Traceback (most recent call last):
...
descentlab.lab.errors.LabError: unknown executor 'thread'; choose one of: inprocess, pool, ray
"""

from __future__ import annotations

import abc
import concurrent.futures
import importlib.util
import logging
import multiprocessing
import os
import pickle
from pathlib import Path
from typing import Any, TypeVar

import torch

from .errors import LabError
from .runner import run_one
from .sweep import Build, Progress, Started, Workers, sweep
from .training import Record, RunSpec
from .workloads import WORKLOADS, get_workload

EXECUTORS = ("inprocess", "pool", "ray")
RAY_MISSING = 'the ray executor needs ray: pip install "descentlab[ray]"'
_E = TypeVar("_E", bound="Executor")


class Executor(abc.ABC):
    """Trains the runs of a sweep; :meth:`sweep` has the contract of ``lab.sweep.sweep``.

    An executor starts its workers at the first sweep that needs them and keeps them for the
    next sweeps until :meth:`close` (it is also a context manager); a sweep interrupted
    (``KeyboardInterrupt``) or whose workers died closes them. ``notes`` lists what the last
    sweep could not do as asked (runs trained in this process because their build could not
    be sent to a worker), one sentence each, for the report.
    """

    name = "executor"

    def __init__(self) -> None:
        self.notes: list[str] = []

    @abc.abstractmethod
    def sweep(
        self,
        specs: list[RunSpec],
        builds: dict[str, Build],
        folder: Path,
        progress: Progress | None = None,
        started: Started | None = None,
    ) -> list[dict[str, Any]]:
        """Train every spec not in ``folder``'s store; the contract of ``lab.sweep.sweep``."""

    def close(self) -> None:  # noqa: B027 - nothing to stop unless workers were started
        """Stop the workers, if any were started (a later sweep starts them again)."""

    def __enter__(self: _E) -> _E:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InProcessExecutor(Executor):
    """The runs in this process: exactly ``lab.sweep.sweep`` (the default executor).

    Args:
        vectorize: train the runs of an lr x seed grid on a registry workload together, as
            one batched problem (the default; see ``lab.sweep.sweep``); False trains one run
            after another.
    """

    name = "inprocess"

    def __init__(self, vectorize: bool = True) -> None:
        super().__init__()
        self.vectorize = vectorize

    def __repr__(self) -> str:
        return "InProcessExecutor()" if self.vectorize else "InProcessExecutor(vectorize=False)"

    def sweep(
        self,
        specs: list[RunSpec],
        builds: dict[str, Build],
        folder: Path,
        progress: Progress | None = None,
        started: Started | None = None,
    ) -> list[dict[str, Any]]:
        self.notes = []
        return sweep(specs, builds, folder, progress, started, vectorize=self.vectorize)


def _one_thread() -> None:
    """A worker's start: torch on one thread, so K workers do not oversubscribe K CPUs."""
    torch.set_num_threads(1)


def _train(spec: RunSpec, build: Build | None) -> Record:
    """Train one run in a worker; ``build`` None rebuilds a registered workload by name."""
    _one_thread()
    return run_one(spec, get_workload(spec.workload).build if build is None else build)


def _registered(name: str, build: Build) -> bool:
    """Whether ``build`` is the registry's own build of workload ``name`` (sent by name)."""
    workload = WORKLOADS.get(name)
    return workload is not None and workload.build is build


class _Parallel(Executor, Workers):
    """An executor whose :meth:`sweep` is ``lab.sweep.sweep`` sending runs to its workers: at
    most ``limit`` runs in flight, results stored as they come, runs whose build cannot be
    sent trained here in between (and said so in :attr:`notes`).

    Subclasses provide :meth:`_open` (start the workers unless started; returns how many
    runs may be in flight), :meth:`_payload` (a build, serialized to be sent; raises when it
    cannot be), :meth:`_ship` (a payload made ready for this sweep's submissions),
    :meth:`_submit`, :meth:`_ready`, :meth:`_result` and :meth:`_close`.
    """

    how = "worker processes"
    why = "it cannot be serialized"

    def __init__(self) -> None:
        super().__init__()
        self._payloads: dict[str, Any] = {}  # per workload: what is sent with each of its runs

    @abc.abstractmethod
    def _open(self) -> int:
        """Start the workers unless started; returns how many runs may be in flight."""

    @abc.abstractmethod
    def _payload(self, build: Build) -> Any:
        """``build`` serialized to be sent; raises when it cannot be."""

    def _ship(self, payload: Any) -> Any:
        return payload

    @abc.abstractmethod
    def _submit(self, spec: RunSpec, payload: Any) -> Any:
        """Start one run on a worker; returns its handle."""

    @abc.abstractmethod
    def _ready(self, handles: list[Any], block: bool) -> list[Any]:
        """The handles among ``handles`` that are done, in order; waits for one when
        ``block``."""

    @abc.abstractmethod
    def _result(self, handle: Any) -> Record:
        """The record of a finished run (its error raised here)."""

    @abc.abstractmethod
    def _close(self) -> None:
        """Stop the workers."""

    def close(self) -> None:
        self._close()

    def sweep(
        self,
        specs: list[RunSpec],
        builds: dict[str, Build],
        folder: Path,
        progress: Progress | None = None,
        started: Started | None = None,
    ) -> list[dict[str, Any]]:
        self.notes, self._payloads = [], {}
        try:
            return sweep(specs, builds, folder, progress, started, workers=self)
        finally:
            self._payloads = {}

    # what lab.sweep asks of its workers

    def sends(self, workload: str, build: Build) -> bool:
        if _registered(workload, build):
            self._payloads[workload] = None  # the worker rebuilds it by name
            return True
        try:
            self._payloads[workload] = self._payload(build)
        except Exception:
            return False
        return True

    def kept(self, counts: dict[str, int]) -> None:
        for workload, count in counts.items():
            self.notes.append(
                f"{workload}: {count} run(s) trained in this process, one at a time: its build "
                f"cannot be sent to {self.how} ({self.why})."
            )

    def open(self, workloads: set[str]) -> int:
        limit = self._open()
        for workload in workloads:
            self._payloads[workload] = self._ship(self._payloads[workload])
        return limit

    def submit(self, spec: RunSpec) -> Any:
        return self._submit(spec, self._payloads[spec.workload])

    def ready(self, handles: list[Any], block: bool) -> list[Any]:
        return self._ready(handles, block)

    def result(self, handle: Any) -> Record:
        return self._result(handle)

    def abort(self, exc: BaseException) -> None:
        if not isinstance(exc, Exception) or isinstance(exc, concurrent.futures.BrokenExecutor):
            self._close()  # an interrupt reaches the workers too: a later sweep starts new ones


def _context(start_method: str) -> Any:
    methods = multiprocessing.get_all_start_methods()
    if start_method == "fork" or start_method not in methods:
        valid = ", ".join(m for m in ("spawn", "forkserver") if m in methods)
        raise LabError(f"start method {start_method!r} is not usable here; choose {valid}")
    return multiprocessing.get_context(start_method)


class PoolExecutor(_Parallel):
    """Worker processes on this machine (``concurrent.futures``), torch on one thread in each.

    Args:
        jobs: how many worker processes; by default one per CPU this process may use.
        start_method: ``"spawn"`` (the default) or ``"forkserver"``; never ``"fork"``, as
            torch's thread pools do not survive a fork.

    A registered workload is rebuilt in the worker by name; another build is sent with
    :mod:`pickle` when it can be (a module-level function), else trained in this process
    (the build of a user's model is a closure: use the ray executor to send it). Each worker
    starts by importing torch (a few seconds), once for all the sweeps until :meth:`close`.
    A script that runs a sweep on a pool must guard its entry point with
    ``if __name__ == "__main__":``, as every spawned process imports it again.
    """

    name = "pool"
    how = "worker processes"
    why = "pickle cannot serialize a closure; the ray executor can"

    def __init__(self, jobs: int | None = None, start_method: str = "spawn") -> None:
        super().__init__()
        self.jobs = _check_jobs(jobs) if jobs is not None else _usable_cpus()
        self._ctx = _context(start_method)
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"PoolExecutor(jobs={self.jobs})"

    def _open(self) -> int:
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                self.jobs, mp_context=self._ctx, initializer=_one_thread
            )
        return self.jobs

    def _payload(self, build: Build) -> Any:
        pickle.dumps(build)  # raises for a closure or a lambda
        return build

    def _submit(self, spec: RunSpec, payload: Any) -> Any:
        assert self._pool is not None
        return self._pool.submit(_train, spec, payload)

    def _ready(self, handles: list[Any], block: bool) -> list[Any]:
        finished, _ = concurrent.futures.wait(
            handles, timeout=None if block else 0, return_when=concurrent.futures.FIRST_COMPLETED
        )
        return [h for h in handles if h in finished]  # in the order they were submitted

    def _result(self, handle: Any) -> Record:
        record: Record = handle.result()
        return record

    def _close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _usable_cpus() -> int:
    """The CPUs this process may run on (its affinity, where the platform tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise LabError(RAY_MISSING) from None
    return ray


def _ray_train(spec: RunSpec, payload: bytes | None) -> Record:
    """A Ray task: train one run (``payload``: the cloudpickled build, None for a registered
    workload)."""
    build = None
    if payload is not None:
        from ray import cloudpickle

        build = cloudpickle.loads(payload)
    return _train(spec, build)


class RayExecutor(_Parallel):
    """Runs as Ray tasks of one CPU each, torch on one thread in each.

    Args:
        address: a running cluster (``"auto"``, ``"host:port"`` or ``"ray://host:port"``
            for Ray Client); None starts a local cluster, with ``jobs`` CPUs (all by default).
            ``descentlab`` and torch must be installed on the cluster's nodes.
        jobs: the most runs in flight at once; by default the cluster's CPUs.

    When Ray is already initialized in this process, that connection is used as it is;
    otherwise the first sweep connects (or starts the local cluster) and :meth:`close`
    disconnects (or shuts it down). A build that is not a registered workload, such as a
    user's model, is sent with cloudpickle, once per sweep through the object store; one
    that cloudpickle cannot serialize is trained in this process.
    """

    name = "ray"
    how = "Ray workers"
    why = "cloudpickle cannot serialize it"

    def __init__(self, address: str | None = None, jobs: int | None = None) -> None:
        super().__init__()
        self._ray = _import_ray()
        self.address = address
        self.jobs = _check_jobs(jobs) if jobs is not None else None
        self._owned = False
        self._task: Any = None

    def __repr__(self) -> str:
        return f"RayExecutor(address={self.address!r}, jobs={self.jobs})"

    def _connect(self) -> None:
        ray = self._ray
        if ray.is_initialized():
            return  # this process's connection: used as it is, and left open
        try:
            if self.address is None:
                ray.init(num_cpus=self.jobs, include_dashboard=False, logging_level=logging.WARNING)
            else:
                ray.init(address=self.address, logging_level=logging.WARNING)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = f"at {self.address!r}" if self.address else "on this machine"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LabError(f"cannot start or reach a Ray cluster {where}: {first}") from None
        self._owned = True

    def _open(self) -> int:
        self._connect()
        if self._task is None:
            self._task = self._ray.remote(num_cpus=1)(_ray_train)
        if self.jobs is not None:
            return self.jobs
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))

    def _payload(self, build: Build) -> Any:
        from ray import cloudpickle

        return cloudpickle.dumps(build)

    def _ship(self, payload: Any) -> Any:
        return None if payload is None else self._ray.put(payload)  # one copy for all its runs

    def _submit(self, spec: RunSpec, payload: Any) -> Any:
        return self._task.remote(spec, payload)

    def _ready(self, handles: list[Any], block: bool) -> list[Any]:
        ready, _ = self._ray.wait(
            handles, num_returns=1 if block else len(handles), timeout=None if block else 0
        )
        ids = set(ready)
        return [h for h in handles if h in ids]

    def _result(self, handle: Any) -> Record:
        record: Record = self._ray.get(handle)
        return record

    def _close(self) -> None:
        self._task = None
        if self._owned:
            self._ray.shutdown()
            self._owned = False


def _check_jobs(jobs: Any) -> int:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise LabError(f"--jobs must be an integer >= 1, got {jobs!r}")
    return jobs


def executor_from(name: str, jobs: int | None = None, address: str | None = None) -> Executor:
    """The executor named by the CLI's ``--executor``, ``--jobs`` and ``--address``.

    ``inprocess`` (the default: here, lr x seed grids batched), ``pool`` (``jobs`` processes, all
    CPUs by default) or ``ray`` (the cluster at ``address``, else a local one of ``jobs``
    CPUs). Raises :class:`LabError`, one line, on a bad name or value, or when ray is missing.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in EXECUTORS:
        raise LabError(f"unknown executor {name!r}; choose one of: {', '.join(EXECUTORS)}")
    if jobs is not None:
        _check_jobs(jobs)
    if address is not None and key != "ray":
        raise LabError(f"--address is for --executor ray, not {key}")
    if key == "inprocess":
        if jobs not in (None, 1):
            raise LabError(
                f"--jobs {jobs} needs --executor pool or ray; inprocess trains in this process"
            )
        return InProcessExecutor()
    if key == "pool":
        return PoolExecutor(jobs)
    if address is not None and not address.strip():
        raise LabError('--address must name a Ray cluster: "auto", host:port or ray://host:port')
    if importlib.util.find_spec("ray") is None:
        raise LabError(RAY_MISSING)
    return RayExecutor(address.strip() if address is not None else None, jobs)


def sweep_with(
    executor: Executor,
    specs: list[RunSpec],
    builds: dict[str, Build],
    folder: Path,
    progress: Progress | None = None,
    started: Started | None = None,
) -> list[dict[str, Any]]:
    """``lab.sweep.sweep`` on ``executor``: every spec's record, in the order of ``specs``.

    Runs already in ``folder/runs.jsonl`` are read back; the others are trained by the
    executor and each is appended to the store, by this process, as soon as it is finished.
    ``started(spec)`` is called when a run is handed to a worker (or begins here),
    ``progress(spec, cached)`` when it is done; both in this process. What the executor
    could not do as asked is in ``executor.notes`` afterwards.
    """
    return executor.sweep(list(specs), builds, folder, progress, started)
