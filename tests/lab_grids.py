"""Small lr x seed grids of the lab's registry workloads, and how two records of one run are
compared: shared by the batched runner's tests and the sweep's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from descentlab.lab.spec import parse_optimizer, parse_regime
from descentlab.lab.store import to_json
from descentlab.lab.training import RunSpec
from descentlab.lab.workloads import WORKLOADS

# Each registry workload in its default regime; gradient noise on one landscape.
OPTIONS: dict[str, dict[str, Any]] = {"ravine": {"noise": 0.5}, "noisy-quadratic": {"samples": 200}}
RTOL = 1e-10  # float64 round-off: the batched matmuls add in another order than the solo ones


def specs_for(
    name: str,
    optimizer: str,
    lrs: list[float] | None = None,
    seeds: tuple[int, ...] = (0, 1),
    steps: int = 4,
    eval_every: int = 2,
    regime: str | None = None,
) -> list[RunSpec]:
    """A small lr x seed grid on ``name`` (the workload's first three lrs by default)."""
    workload = WORKLOADS[name]
    opt = parse_optimizer(optimizer)
    options = tuple(sorted({**workload.options, **OPTIONS.get(name, {})}.items()))
    reg = parse_regime(regime or workload.regime)
    chosen = lrs if lrs is not None else list(workload.lrs[opt.name][:3])
    return [
        RunSpec(name, opt, lr, seed, reg, steps, eval_every, options)
        for lr in chosen
        for seed in seeds
    ]


def assert_close(got: Any, want: Any, what: str) -> None:
    a, b = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=0, equal_nan=True, err_msg=what)


SWEEP_TIMING = {"time", "seconds", "wall_seconds", "load", "load_end", "batch"}


def assert_same_rows(got: dict[str, Any], want: dict[str, Any], exact: bool) -> None:
    """Two stored records of one run: equal but for the timings (to round-off unless exact)."""
    assert set(got) == set(want)
    for key in sorted(set(got) - SWEEP_TIMING):
        if exact or key in ("id", "spec", "diverged", "lr", "clock", "cpus"):
            assert json.dumps(to_json(got[key])) == json.dumps(to_json(want[key])), key
        elif key == "evals":
            assert [sorted(row) for row in got[key]] == [sorted(row) for row in want[key]]
            for row, other in zip(got[key], want[key], strict=True):
                assert_close(list(row.values()), [other[k] for k in row], f"evals {row['step']}")
        else:
            assert_close(got[key], want[key], key)


def folder(path: Path) -> Path:
    path.mkdir()
    return path


def grid(name: str, optimizer: str, lrs: list[float], seeds: int, steps: int, regime: str):
    return specs_for(name, optimizer, lrs=lrs, seeds=tuple(range(seeds)), steps=steps,
                     eval_every=2, regime=regime)  # fmt: skip


class Stop(Exception):
    pass


class Recorder:
    """The callbacks of a sweep; raises Stop once ``stop_progress_after`` runs are done."""

    def __init__(self, stop_progress_after: int | None = None) -> None:
        self.started: list[str] = []
        self.progress: list[tuple[str, bool]] = []
        self.stop_after = stop_progress_after

    def start(self, spec: RunSpec) -> None:
        self.started.append(spec.id)

    def done(self, spec: RunSpec, cached: bool) -> None:
        self.progress.append((spec.id, cached))
        if self.stop_after is not None and len(self.progress) == self.stop_after:
            raise Stop
