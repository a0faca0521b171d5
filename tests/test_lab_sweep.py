"""The one sweep loop, as every executor runs it: records in the order of the specs, each run
trained once and stored before it is reported, repeats and stored runs read back, runs
that cannot be sent trained here, the runs in flight kept when the sweep fails.

The workers here are a fake that trains in this process and finishes its runs in the order
they were sent, one per look, so the loop's bookkeeping is tested without processes (the
pool and Ray themselves: tests/test_lab_executors.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from descentlab.lab import sweep as sweeps
from descentlab.lab.executors import InProcessExecutor, sweep_with
from descentlab.lab.runner import model_build, run_one
from descentlab.lab.spec import OptimizerSpec, Regime, parse_optimizer, parse_regime
from descentlab.lab.store import Store, to_json
from descentlab.lab.sweep import Build, Workers, sweep
from descentlab.lab.training import Record, RunSpec
from descentlab.lab.workloads import WORKLOADS, Problem, supervised_problem
from lab_grids import Recorder, Stop, assert_same_rows, folder, grid

RAVINE = WORKLOADS["ravine"].build


def _specs(workload: str, lrs: tuple[float, ...]) -> list[RunSpec]:
    return [
        RunSpec(workload, OptimizerSpec("sgd"), lr, 0, Regime("full"), 4, 2, (("noise", 0.1),))
        for lr in lrs
    ]


class FakeWorkers(Workers):
    """Trains a sent run when it is submitted; hands one result back per look, oldest first."""

    def __init__(self, slots: int = 2, sendable: bool = True, fail: float | None = None) -> None:
        self.slots, self.sendable, self.fail = slots, sendable, fail
        self.sent: list[str] = []
        self.records: dict[str, Record | None] = {}
        self.kept_counts: dict[str, int] = {}
        self.aborted: BaseException | None = None

    def sends(self, workload: str, build: Build) -> bool:
        return self.sendable

    def kept(self, counts: dict[str, int]) -> None:
        self.kept_counts = counts

    def open(self, workloads: set[str]) -> int:
        return self.slots

    def submit(self, spec: RunSpec) -> Any:
        self.sent.append(spec.id)
        self.records[spec.id] = None if spec.lr == self.fail else run_one(spec, RAVINE)
        return spec.id

    def ready(self, handles: list[Any], block: bool) -> list[Any]:
        return handles[:1]

    def result(self, handle: Any) -> Record:
        record = self.records[handle]
        if record is None:
            raise RuntimeError("this run failed")
        return record

    def abort(self, exc: BaseException) -> None:
        self.aborted = exc


class Calls:
    """The callbacks, checking that a run reported done is already in the store."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[str] = []
        self.progress: list[tuple[str, bool]] = []

    def start(self, spec: RunSpec) -> None:
        self.started.append(spec.id)

    def done(self, spec: RunSpec, cached: bool) -> None:
        assert spec.id in Store(self.folder).load(), "reported before it was stored"
        self.progress.append((spec.id, cached))


@pytest.mark.parametrize("how", ["batched", "one by one", "workers"])
def test_each_run_is_trained_once_and_stored_before_it_is_reported(
    tmp_path: Path, how: str
) -> None:
    specs = _specs("ravine", (0.01, 0.02, 0.03))
    specs = [*specs, specs[0], *_specs("ravine", (0.04,))]  # a repeat of the first
    fake = FakeWorkers() if how == "workers" else None
    calls = Calls(tmp_path)
    rows = sweep(specs, {"ravine": RAVINE}, tmp_path, calls.done, calls.start,
                 vectorize=how == "batched", workers=fake)  # fmt: skip
    assert {row["batch"] for row in rows} == {4 if how == "batched" else 1}
    assert [row["id"] for row in rows] == [spec.id for spec in specs]
    unique = list(dict.fromkeys(spec.id for spec in specs))
    assert sorted(calls.started) == sorted(unique)
    assert sorted(calls.progress) == sorted([(i, False) for i in unique] + [(specs[0].id, True)])
    assert calls.progress.index((specs[0].id, True)) > calls.progress.index((specs[0].id, False))
    assert len(Store(tmp_path).path.read_text().splitlines()) == len(unique)
    if fake is not None:
        assert sorted(fake.sent) == sorted(unique) and fake.kept_counts == {}

    again = Calls(tmp_path)
    assert sweep(specs, {"ravine": RAVINE}, tmp_path, again.done, again.start, workers=fake) == rows
    assert again.started == [] and again.progress == [(spec.id, True) for spec in specs]


def test_a_repeat_of_a_run_in_flight_is_reported_when_that_run_is_done(tmp_path: Path) -> None:
    specs = _specs("ravine", (0.01, 0.02))
    specs = [specs[0], specs[0], specs[1]]
    fake, calls = FakeWorkers(slots=3), Calls(tmp_path)
    sweep(specs, {"ravine": RAVINE}, tmp_path, calls.done, calls.start, workers=fake)
    assert fake.sent == [specs[0].id, specs[2].id]  # the repeat is not sent again
    assert calls.progress == [(specs[0].id, False), (specs[0].id, True), (specs[2].id, False)]


def test_runs_that_cannot_be_sent_are_trained_here_and_counted(tmp_path: Path) -> None:
    specs = _specs("ravine", (0.01, 0.02))
    Store(tmp_path).append(run_one(specs[1], RAVINE))  # stored already: not counted
    fake = FakeWorkers(sendable=False)
    rows = sweep([*specs, specs[0]], {"ravine": RAVINE}, tmp_path, workers=fake)
    assert fake.sent == [] and fake.kept_counts == {"ravine": 1}
    assert [row["id"] for row in rows] == [specs[0].id, specs[1].id, specs[0].id]


def test_a_failing_run_stops_the_sweep_and_the_runs_in_flight_are_kept(tmp_path: Path) -> None:
    specs = _specs("ravine", (0.01, 0.02, 0.03, 0.04))
    fake = FakeWorkers(slots=3, fail=0.01)  # the first to finish fails; two are in flight
    with pytest.raises(RuntimeError, match="this run failed"):
        sweep(specs, {"ravine": RAVINE}, tmp_path, workers=fake)
    assert set(Store(tmp_path).load()) == {specs[1].id, specs[2].id}
    assert isinstance(fake.aborted, RuntimeError)


# ---------------------------------------------------------------- lr x seed grids in batches


def test_a_vectorized_sweep_records_what_the_one_by_one_sweep_does(tmp_path: Path) -> None:
    digits = grid("digits-logreg", "adam", [1e-2, 1e-1, 1e200], 2, 6, "minibatch:64")
    ravine = grid("ravine", "sgd:momentum=0.9", [1e-2, 3e-2], 2, 9, "full")
    alone = grid("linreg", "rmsprop", [1e-2], 1, 5, "minibatch:25")  # a group of one
    specs = [*digits[:3], *ravine, digits[3], *alone, *digits[4:], digits[0]]  # and a repeat
    builds = {name: WORKLOADS[name].build for name in ("digits-logreg", "ravine", "linreg")}
    before = sweeps.batched_runs
    rec = Recorder()
    rows = sweep(specs, builds, folder(tmp_path / "batched"), rec.done, rec.start)
    assert sweeps.batched_runs - before == len(digits) + len(ravine)
    one = Recorder()
    plain = sweep(specs, builds, folder(tmp_path / "plain"), one.done, one.start, vectorize=False)
    assert sweeps.batched_runs - before == len(digits) + len(ravine)  # not batched
    assert [r["id"] for r in rows] == [s.id for s in specs]
    # every run trained once, in any order; the repeat read back when the sweep reaches it
    assert sorted(rec.started) == sorted(one.started) == sorted({s.id for s in specs})
    assert sorted(rec.progress) == sorted(one.progress)
    assert rec.progress[-1] == (digits[0].id, True)
    for row, other, spec in zip(rows, plain, specs, strict=True):
        assert row["batch"] == (1 if spec in alone else 6 if spec in digits else 4)
        assert other["batch"] == 1
        assert_same_rows(row, other, exact=spec.workload != "digits-logreg")
        if row["batch"] > 1 and not row["diverged"]:  # its share of the batch's seconds
            assert 0 < row["seconds"] == row["time"][-1]
        assert row["diverged"] == (spec.lr == 1e200)  # and left the batch alone


def test_a_mixed_sweep_batches_the_registry_and_runs_a_user_model_one_by_one(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    x, y = torch.randn(40, 4, dtype=torch.float64), torch.randint(0, 3, (40,))

    def make(m: torch.nn.Module) -> Problem:
        m = m.double()
        return supervised_problem(m, x, y, x[:8], y[:8], torch.nn.functional.cross_entropy, True)

    user = model_build(model, make)
    mine = [
        RunSpec("mine", parse_optimizer("adam"), lr, seed, parse_regime("minibatch:8"), 6, 2,
                (), "f00d")
        for lr in (1e-2, 1e-1)
        for seed in (0, 1)
    ]  # fmt: skip
    builtin = grid("noisy-quadratic", "sgd", [1e-2, 3e-2], 2, 5, "minibatch:32")
    builds = {"mine": user, "noisy-quadratic": WORKLOADS["noisy-quadratic"].build}
    before = sweeps.batched_runs
    rows = sweep([*mine, *builtin], builds, tmp_path)
    assert sweeps.batched_runs - before == len(builtin)
    assert [r["batch"] for r in rows] == [1] * len(mine) + [len(builtin)] * len(builtin)
    for row, spec in zip(rows[: len(mine)], mine, strict=True):  # run_one's, exactly
        want = json.loads(json.dumps(to_json(dataclasses.asdict(run_one(spec, user)))))
        assert_same_rows(row, want, exact=True)
    for row, spec in zip(rows[len(mine) :], builtin, strict=True):
        want = json.loads(
            json.dumps(to_json(dataclasses.asdict(run_one(spec, builds[spec.workload]))))
        )
        assert_same_rows(row, want, exact=False)


@pytest.mark.parametrize(
    ("name", "regime", "stop_after"),
    [("digits-logreg", "minibatch:64", 2), ("linreg", "full", 3), ("ravine", "full", 1)],
)
def test_an_interrupted_batch_resumes_to_the_same_records(
    tmp_path: Path, name: str, regime: str, stop_after: int
) -> None:
    """A batch's records are all stored before the first is reported: an interruption then
    loses none. A sweep resumed from a store holding only some of them (another executor
    stores runs one at a time) trains the runs left in a smaller batch (one left alone:
    with a spare copy); each run's numbers are those of the uninterrupted sweep, bit for
    bit."""
    specs = grid(name, "adam", [1e-2, 1e-1], 2, 7, regime)
    builds = {name: WORKLOADS[name].build}
    whole = sweep(specs, builds, folder(tmp_path / "whole"))
    stopped = Recorder(stop_progress_after=1)
    with pytest.raises(Stop):
        sweep(specs, builds, folder(tmp_path / "stopped"), stopped.done, stopped.start)
    assert sorted(stopped.started) == sorted(s.id for s in specs)  # the whole batch began
    assert len(Store(tmp_path / "stopped").load()) == len(specs)  # and none of it was lost
    lines = (tmp_path / "whole" / "runs.jsonl").read_text().splitlines(keepends=True)
    (folder(tmp_path / "resumed") / "runs.jsonl").write_text("".join(lines[:stop_after]))
    kept = Store(tmp_path / "resumed").load()
    assert len(kept) == stop_after
    before = sweeps.batched_runs
    again = Recorder()
    rows = sweep(specs, builds, tmp_path / "resumed", again.done, again.start)
    assert sweeps.batched_runs - before == len(specs) - stop_after
    assert sorted(again.started) == sorted(s.id for s in specs if s.id not in kept)
    assert sorted(again.progress) == sorted((s.id, s.id in kept) for s in specs)
    for row, other in zip(rows, whole, strict=True):
        assert_same_rows(row, other, exact=True)
    assert {r["batch"] for r in rows} == {len(specs), len(specs) - stop_after} - {0}


def test_the_in_process_executor_batches_unless_told_not_to(tmp_path: Path) -> None:
    specs = grid("saddle", "rmsprop", [1e-2, 3e-2], 1, 4, "full")
    builds = {"saddle": WORKLOADS["saddle"].build}
    before = sweeps.batched_runs
    assert repr(InProcessExecutor()) == "InProcessExecutor()"
    rows = sweep_with(InProcessExecutor(), specs, builds, folder(tmp_path / "a"))
    assert sweeps.batched_runs - before == 2 and [r["batch"] for r in rows] == [2, 2]
    off = InProcessExecutor(vectorize=False)
    assert repr(off) == "InProcessExecutor(vectorize=False)"
    plain = sweep_with(off, specs, builds, folder(tmp_path / "b"))
    assert sweeps.batched_runs - before == 2 and [r["batch"] for r in plain] == [1, 1]
    for row, other in zip(rows, plain, strict=True):
        assert_same_rows(row, other, exact=True)  # a landscape: bit for bit
