"""The one sweep loop, as every executor runs it: records in the order of the specs, each run
trained once and stored before it is reported, repeats and stored runs read back, runs
that cannot be sent trained here, the runs in flight kept when the sweep fails.

The workers here are a fake that trains in this process and finishes its runs in the order
they were sent, one per look, so the loop's bookkeeping is tested without processes (the
pool and Ray themselves: tests/test_lab_executors.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from descentlab.lab.runner import run_one
from descentlab.lab.spec import OptimizerSpec, Regime
from descentlab.lab.store import Store
from descentlab.lab.sweep import Build, Workers, sweep
from descentlab.lab.training import Record, RunSpec
from descentlab.lab.workloads import WORKLOADS

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
