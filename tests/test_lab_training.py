"""The lab's training core (``lab.training``): one divergence rule, one seed derivation,
one evaluation schedule, one recorder, obeyed by the one-by-one and the batched runner."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
import torch

from descentlab.lab import training
from descentlab.lab.batched import run_batched
from descentlab.lab.runner import run_one
from descentlab.lab.spec import parse_optimizer, parse_regime
from descentlab.lab.training import (
    COMPARE_EVALUATIONS,
    REPRODUCE_EVALUATIONS,
    Recorder,
    RunSpec,
    batch_order,
    batch_seed,
    diverged,
    eval_every,
    evaluation_due,
)
from descentlab.lab.workloads import WORKLOADS, Problem

START = 1e-3  # the start loss of the growing landscape below


def _growing(seed: int, options: dict[str, Any]) -> Problem:
    """A landscape, ``1e-3 * (x^2 + y^2)`` from (1, 0): its loss starts at 1e-3, and plain
    gradient descent at lr 3000 multiplies x by -5 a step, the loss by 25."""
    w = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)

    def f(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return START * (x**2 + y**2)

    def point() -> tuple[float, float]:
        return float(w[0].detach()), float(w[1].detach())

    gen = torch.Generator().manual_seed(seed)
    parts = {"kind": "landscape", "f": f, "w": w, "noise": 0.0, "gen": gen}
    return Problem([w], lambda indices: f(w[0], w[1]), None, point=point, parts=parts)


def _growing_specs(steps: int) -> list[RunSpec]:
    sgd, full = parse_optimizer("sgd"), parse_regime("full")
    return [RunSpec("growing", sgd, 3000.0, seed, full, steps, 1) for seed in (0, 1)]


def test_the_divergence_rule_floors_the_start_loss_at_one() -> None:
    assert not diverged(1e5, START)  # 1e5 < 1e6 * max(1e-3, 1)
    assert diverged(1e5, START, floor=0.0)  # relative to the start itself: diverged
    assert diverged(2e6, 1.0) and not diverged(1e6, 1.0) and diverged(-2e6, 1.0)
    assert diverged(3e7, -20.0) and not diverged(1e7, -20.0)  # |start| is the scale
    assert diverged(math.nan, 1.0) and diverged(math.inf, 1.0) and diverged(-math.inf, 1.0)
    assert not diverged(1e300, 1.0, factor=math.inf) and diverged(math.inf, 1.0, factor=math.inf)


def test_seeds_and_evaluation_schedule() -> None:
    assert batch_seed(0) == 10_000 and batch_seed(7) == 10_007
    assert (COMPARE_EVALUATIONS, REPRODUCE_EVALUATIONS) == (30, 40)
    assert eval_every(300, 30) == 10 and eval_every(20, 30) == 1 and eval_every(81, 40) == 2
    assert [s for s in range(1, 8) if evaluation_due(s, 7, 3)] == [3, 6, 7]
    # the mini-batch order: a generator seeded batch_seed(seed), a permutation per epoch
    order = batch_order(parse_regime("minibatch:4"), 10, 3)
    assert order is not None
    gen = torch.Generator().manual_seed(batch_seed(3))
    first, second = torch.randperm(10, generator=gen), torch.randperm(10, generator=gen)
    got = [next(order) for _ in range(4)]  # two batches an epoch, the last partial dropped
    want = [first[:4], first[4:8], second[:4], second[4:8]]
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    assert batch_order(parse_regime("full"), 10, 3) is None
    assert batch_order(parse_regime("sgd"), None, 3) is None  # no data


def test_same_seed_gives_identical_numbers_and_seeds_differ() -> None:
    spec = RunSpec(
        "digits-logreg", parse_optimizer("adam"), 1e-2, 0, parse_regime("minibatch:32"), 15, 5
    )
    build = WORKLOADS["digits-logreg"].build
    a, b = run_one(spec, build), run_one(spec, build)
    assert a.loss == b.loss and a.evals == b.evals and a.update_norm == b.update_norm
    c = run_one(dataclasses.replace(spec, seed=1), build)
    assert c.loss != a.loss


def test_the_recorder_ends_a_diverged_run_with_a_nan_evaluation() -> None:
    spec = _growing_specs(10)[0]
    rec = Recorder(spec, [0.5], 2)
    rec.begin({"train_loss": 2.0, "test_loss": 3.0}, (1.0, 0.0))
    assert rec.step(1.0, 0.1, (1.0, 2.0, 3.0), 0.5, (0.5, 0.0)) == (True, False)
    rec.evaluated({"train_loss": 1.5})
    assert rec.step(math.nan, 0.1, (1.0, 2.0, 3.0), 0.7, None) == (False, True)
    record = rec.finish(0.7, 0.9)
    assert record.diverged and record.loss[0] == 1.0 and math.isnan(record.loss[1])
    assert record.evals[:2] == [
        {"step": 0, "train_loss": 2.0, "test_loss": 3.0},
        {"step": 1, "train_loss": 1.5},
    ]
    assert record.evals[2]["step"] == 2 and math.isnan(record.evals[2]["train_loss"])
    assert record.points == [(1.0, 0.0), (0.5, 0.0)] and record.time == [0.5, 0.7]
    assert (record.seconds, record.wall_seconds, record.load, record.cpus) == (0.7, 0.9, [0.5], 2)
    assert record.id == spec.id and record.spec == spec.describe()


@pytest.mark.parametrize("runner", ["one by one", "batched"])
def test_a_run_started_below_one_diverges_only_past_the_floor(runner: str) -> None:
    """Losses 1e-3 * 25^k: 2.4e5 at step 7 (not diverged: under 1e6 * max(1e-3, 1)); 6.1e6
    at step 8 (diverged). Without the floor the run would stop at step 6 (9766 > 1e3)."""

    def train(steps: int) -> list[training.Record]:
        specs = _growing_specs(steps)
        if runner == "batched":
            return run_batched(specs, _growing)
        return [run_one(spec, _growing) for spec in specs]

    for record in train(7):
        assert not record.diverged and len(record.loss) == 7
        assert 1e5 < max(record.loss) < 1e6
        assert record.evals[-1]["step"] == 7 and math.isfinite(record.evals[-1]["train_loss"])
    for record in train(12):
        assert record.diverged and len(record.loss) == 8 and record.loss[-1] > 1e6
        assert record.evals[-1]["step"] == 8 and math.isnan(record.evals[-1]["train_loss"])


def test_both_runners_obey_the_one_divergence_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace ``training.diverged``: the one-by-one and the batched runner both follow."""
    calls: list[tuple[float, float]] = []

    def after_three(loss: float, start_loss: float, **kw: Any) -> bool:
        calls.append((loss, start_loss))
        return len(calls) % 3 == 0  # every third look says "diverged"

    monkeypatch.setattr(training, "diverged", after_three)
    spec = RunSpec("ravine", parse_optimizer("sgd"), 1e-2, 0, parse_regime("full"), 20, 5)
    build = WORKLOADS["ravine"].build
    alone = run_one(spec, build)
    assert alone.diverged and len(alone.loss) == 3 and len(calls) == 3
    assert calls[0] == (alone.loss[0], alone.evals[0]["train_loss"])
    calls.clear()
    (batched,) = run_batched([spec], build)
    assert batched.diverged and batched.loss == alone.loss and len(calls) == 3
    assert math.isnan(batched.evals[-1]["train_loss"]) and batched.evals[-1]["step"] == 3
