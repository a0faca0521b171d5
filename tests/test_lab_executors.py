"""Executors: a process pool and Ray train the same records as this process, store each as it
finishes (resumable), read finished runs back, and train a build they cannot send here."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from descentlab.lab import LabError
from descentlab.lab.executors import (
    InProcessExecutor,
    PoolExecutor,
    RayExecutor,
    executor_from,
    sweep_with,
)
from descentlab.lab.runner import model_build
from descentlab.lab.spec import OptimizerSpec, Regime
from descentlab.lab.store import Store, to_json
from descentlab.lab.sweep import sweep
from descentlab.lab.training import RunSpec
from descentlab.lab.workloads import WORKLOADS, Problem, get_workload, supervised_problem

TIMING = {"time", "seconds", "wall_seconds", "load", "load_end", "cpus", "batch"}
OPTS = (OptimizerSpec("sgd"), OptimizerSpec("adam"))


def _specs(workload: str, regime: Regime, steps: int, lr: float, seeds: int, **options: Any):
    return [
        RunSpec(workload, opt, lr, seed, regime, steps, 5, tuple(sorted(options.items())))
        for opt in OPTS
        for seed in range(seeds)
    ]


# a 2-D landscape with gradient noise (seeds differ) and two small supervised workloads
SPECS = [
    *_specs("ravine", Regime("full"), 40, 0.05, 2, noise=0.5),
    *_specs("linreg", Regime("minibatch", 16), 20, 0.01, 1),
    *_specs("digits-logreg", Regime("minibatch", 64), 15, 0.1, 1),
]
BUILDS = {name: get_workload(name).build for name in ("ravine", "linreg", "digits-logreg")}


def _numbers(rows: list[dict[str, Any]]) -> list[str]:
    """Each record without its timing fields, as canonical JSON (a NaN equals itself)."""
    return [
        json.dumps(to_json({k: v for k, v in row.items() if k not in TIMING}), sort_keys=True)
        for row in rows
    ]


def _lines(folder: Path) -> int:
    return len((folder / "runs.jsonl").read_text().splitlines())


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The in-process records of SPECS."""
    return sweep(SPECS, BUILDS, tmp_path_factory.mktemp("inprocess"))


@pytest.fixture(scope="module")
def pool() -> Iterator[PoolExecutor]:
    """Two worker processes, shared by the tests (their start is most of a pool test's time)."""
    with PoolExecutor(jobs=2) as executor:
        yield executor


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


class Stop(Exception):
    pass


class Recorder:
    def __init__(self, stop_after: int | None = None, stop: type[BaseException] = Stop) -> None:
        self.started: list[str] = []
        self.progress: list[tuple[str, bool]] = []
        self.stop_after, self.stop = stop_after, stop

    def start(self, spec: RunSpec) -> None:
        if self.stop_after is not None and len(self.started) == self.stop_after:
            raise self.stop  # in the middle of the sweep
        self.started.append(spec.id)

    def done(self, spec: RunSpec, cached: bool) -> None:
        self.progress.append((spec.id, cached))


def test_pool_trains_the_in_process_records_and_reads_them_back(
    tmp_path: Path, reference: list[dict[str, Any]], pool: PoolExecutor
) -> None:
    first = Recorder()
    rows = sweep_with(pool, SPECS, BUILDS, tmp_path, first.done, first.start)
    assert _numbers(rows) == _numbers(reference)
    assert [r["id"] for r in rows] == [s.id for s in SPECS]  # in the order of the specs
    assert sorted(first.started) == sorted(s.id for s in SPECS)
    assert sorted(first.progress) == sorted((s.id, False) for s in SPECS)
    assert _lines(tmp_path) == len(SPECS) and set(Store(tmp_path).load()) == set(first.started)
    assert pool.notes == []

    again = Recorder()
    assert sweep_with(pool, SPECS, BUILDS, tmp_path, again.done, again.start) == rows
    assert again.started == []  # nothing trained: every run read back
    assert again.progress == [(s.id, True) for s in SPECS]
    assert _lines(tmp_path) == len(SPECS)


def test_an_interrupted_pool_sweep_keeps_its_finished_runs_and_resumes(
    tmp_path: Path, reference: list[dict[str, Any]], pool: PoolExecutor
) -> None:
    stopped = Recorder(stop_after=3)
    with pytest.raises(Stop):
        sweep_with(pool, SPECS, BUILDS, tmp_path, stopped.done, stopped.start)
    kept = Store(tmp_path).load()
    assert set(kept) == set(stopped.started) and len(kept) == 3  # the runs begun all finished

    rerun = Recorder()
    rows = sweep_with(pool, SPECS, BUILDS, tmp_path, rerun.done, rerun.start)
    assert sorted(rerun.started) == sorted(s.id for s in SPECS if s.id not in kept)
    assert sorted(rerun.progress) == sorted((s.id, s.id in kept) for s in SPECS)
    assert _numbers(rows) == _numbers(reference)
    assert _lines(tmp_path) == len(SPECS)


def test_an_interrupt_keeps_the_runs_begun_and_stops_the_workers(tmp_path: Path) -> None:
    with PoolExecutor(jobs=2) as own:
        stopped = Recorder(stop_after=2, stop=KeyboardInterrupt)  # as a Ctrl-C
        with pytest.raises(KeyboardInterrupt):
            sweep_with(own, SPECS[2:], BUILDS, tmp_path, stopped.done, stopped.start)
        assert set(Store(tmp_path).load()) == set(stopped.started)
        assert own._pool is None  # the workers got the interrupt too: the next sweep starts anew


def _user_build() -> tuple[Any, str]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        x, y = torch.randn(48, 4), torch.randn(48, 1)

    def make(model: torch.nn.Module) -> Problem:
        return supervised_problem(model, x, y, x[:8], y[:8], torch.nn.functional.mse_loss, False)

    return model_build(net, make), "f00d"


def _user_specs(fingerprint: str) -> list[RunSpec]:
    return [
        RunSpec("model", opt, 0.01, 0, Regime("minibatch", 8), 12, 4, (), fingerprint)
        for opt in OPTS
    ]


def test_a_user_model_build_is_trained_in_process_with_a_note(
    tmp_path: Path, pool: PoolExecutor
) -> None:
    build, fingerprint = _user_build()
    specs = [*_user_specs(fingerprint), *SPECS[:2]]
    builds = {"model": build, "ravine": BUILDS["ravine"]}
    expected = sweep(specs, builds, _folder(tmp_path / "inprocess"))
    rec = Recorder()
    rows = sweep_with(pool, specs, builds, _folder(tmp_path / "pool"), rec.done, rec.start)
    assert _numbers(rows) == _numbers(expected)
    assert sorted(rec.started) == sorted(s.id for s in specs)
    assert len(pool.notes) == 1
    assert pool.notes[0].startswith("model: 2 run(s) trained in this process")
    assert "ray executor" in pool.notes[0]


def probe_build(seed: int, options: dict[str, Any]) -> Problem:
    """A module-level build (pickled by reference) that reports where it was trained."""
    if options.get("fail"):
        raise LabError("this run cannot be built")
    problem = WORKLOADS["ravine"].build(seed, options)
    problem.evaluate = lambda: {"pid": float(os.getpid()), "threads": torch.get_num_threads()}
    return problem


def test_pool_workers_use_one_torch_thread_and_send_a_picklable_build(
    tmp_path: Path, pool: PoolExecutor
) -> None:
    specs = _specs("probe", Regime("full"), 5, 0.05, 2)
    rows = sweep_with(pool, specs, {"probe": probe_build}, tmp_path)
    evals = [row["evals"][-1] for row in rows]
    assert {e["threads"] for e in evals} == {1}
    assert os.getpid() not in {int(e["pid"]) for e in evals}
    assert pool.notes == []


def test_a_failing_run_raises_its_error_and_the_others_are_kept(
    tmp_path: Path, pool: PoolExecutor
) -> None:
    specs = [*_specs("probe", Regime("full"), 5, 0.05, 1), *_specs("probe", Regime("full"), 5,
             0.05, 1, fail=True)]  # fmt: skip
    with pytest.raises(LabError, match="this run cannot be built"):
        sweep_with(pool, specs, {"probe": probe_build}, tmp_path)
    kept = Store(tmp_path).load()
    assert set(kept) == {s.id for s in specs[:2]}  # both were running when the other failed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("thread", None, None), "unknown executor 'thread'; choose one of: inprocess, pool, ray"),
        (("", None, None), "unknown executor ''; choose one of: inprocess, pool, ray"),
        (("pool", 0, None), "--jobs must be an integer >= 1, got 0"),
        (("ray", -2, None), "--jobs must be an integer >= 1, got -2"),
        (("pool", None, "auto"), "--address is for --executor ray, not pool"),
        (("inprocess", 4, None), "--jobs 4 needs --executor pool or ray"),
        (("ray", None, " "), "--address must name a Ray cluster"),
    ],
)
def test_bad_executor_values_are_one_line_errors(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(LabError) as info:
        executor_from(*args)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_executor_from_names() -> None:
    assert isinstance(executor_from("inprocess", None, None), InProcessExecutor)
    assert isinstance(executor_from("InProcess", 1, None), InProcessExecutor)
    pool = executor_from(" pool ", 3, None)
    assert isinstance(pool, PoolExecutor) and pool.jobs == 3
    assert executor_from("pool", None, None).jobs >= 1  # type: ignore[attr-defined]
    with pytest.raises(LabError, match="start method 'fork' is not usable here"):
        PoolExecutor(2, start_method="fork")


def test_ray_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    for make in (lambda: executor_from("ray", 2, None), lambda: RayExecutor(None, 2)):
        with pytest.raises(LabError) as info:
            make()
        assert str(info.value) == 'the ray executor needs ray: pip install "descentlab[ray]"'


def test_ray_without_a_cluster_at_the_address_is_a_lab_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ray = pytest.importorskip("ray", reason='ray is not installed (pip install "descentlab[ray]")')
    if ray.is_initialized():
        pytest.skip("ray is already initialized in this process")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    executor = executor_from("ray", None, "auto")  # no cluster is running
    with pytest.raises(LabError, match="cannot start or reach a Ray cluster at 'auto': "):
        sweep_with(executor, SPECS[:1], BUILDS, tmp_path)
    assert not ray.is_initialized() and not (tmp_path / "runs.jsonl").exists()


def test_ray_trains_the_in_process_records(tmp_path: Path, reference: list[dict[str, Any]]) -> None:
    ray = pytest.importorskip("ray", reason='ray is not installed (pip install "descentlab[ray]")')
    assert not ray.is_initialized()
    build, fingerprint = _user_build()
    lock = threading.Lock()

    def unsendable(seed: int, options: dict[str, Any]) -> Problem:
        with lock:  # cloudpickle cannot serialize a lock
            return BUILDS["ravine"](seed, options)

    odd = _specs("odd", Regime("full"), 10, 0.05, 1)
    landscape_and_linreg = SPECS[:6]  # (digits' data would take the workers 2 s to load)
    specs = [*landscape_and_linreg, *_user_specs(fingerprint), *odd]
    builds = {**BUILDS, "model": build, "odd": unsendable}
    expected = reference[:6] + sweep(specs[6:], builds, _folder(tmp_path / "inprocess"))

    began = time.perf_counter()
    rec = Recorder()
    with executor_from("ray", 2, None) as executor:  # starts a local cluster of 2 CPUs
        rows = sweep_with(executor, specs, builds, _folder(tmp_path / "ray"), rec.done, rec.start)
        assert ray.is_initialized()
    seconds = time.perf_counter() - began
    assert not ray.is_initialized()  # the cluster it started is shut down
    assert _numbers(rows) == _numbers(expected)  # the user's model too, sent with cloudpickle
    assert sorted(rec.started) == sorted(s.id for s in specs)
    assert _lines(tmp_path / "ray") == len(specs)
    assert len(executor.notes) == 1 and executor.notes[0].startswith("odd: 2 run(s) trained")
    print(f"ray sweep of {len(specs)} runs: {seconds:.1f} s, including the cluster's start")


def test_cli_pool_executor_matches_in_process(tmp_path: Path) -> None:
    """``descentlab compare --executor pool --jobs 2`` records the runs the default does."""
    import subprocess

    args = ["--workload", "ravine", "--optimizers", "sgd,adam", "--seeds", "1", "--steps", "15"]
    args += ["--lr", "grid"]
    losses = []
    for extra, out in (([], "inprocess"), (["--executor", "pool", "--jobs", "2"], "pool")):
        proc = subprocess.run(
            [sys.executable, "-m", "descentlab", "compare", *args, *extra,
             "--out", str(tmp_path / out)],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        lines = (tmp_path / out / "runs.jsonl").read_text().splitlines()
        losses.append({r["id"]: r["loss"] for r in map(json.loads, lines)})
    assert len(losses[0]) == 10 and losses[0] == losses[1]
    config = json.loads((tmp_path / "pool" / "config.json").read_text())
    assert config["executor"].startswith("PoolExecutor")
