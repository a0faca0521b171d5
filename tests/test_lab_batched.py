"""Vectorized lab runs: run_batched gives run_one's records, run by run, and keeps slices apart
(the sweep's batching of lr x seed grids is tested with the sweep, tests/test_lab_sweep.py)."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np
import pytest
import torch

from descentlab.lab import batched, training
from descentlab.lab.batched import can_batch, run_batched
from descentlab.lab.runner import model_build, run_one
from descentlab.lab.spec import parse_optimizer, parse_regime
from descentlab.lab.store import to_json
from descentlab.lab.training import Record, RunSpec
from descentlab.lab.workloads import WORKLOADS, Problem, supervised_problem
from lab_grids import SWEEP_TIMING, assert_close, specs_for

# Every optimizer of the lab, and the options that change the shape of its rule.
OPTIMIZERS = [
    "sgd",
    "sgd:momentum=0.9:nesterov=true",
    "sgd:momentum=0.9:dampening=0.1:weight_decay=0.01",
    "momentum:weight_decay=0.01",
    "rmsprop",
    "rmsprop:centered=true:momentum=0.9",
    "adam",
    "adam:amsgrad=true:weight_decay=0.01",
    "adamw",
]
HEAVY = {"mnist1d-cnn"}


def assert_same_run(got: Record, want: Record) -> None:
    """Every field but the timings equal (the loss curve, evals and norms to round-off)."""
    assert (got.id, got.spec, got.diverged) == (want.id, want.spec, want.diverged)
    assert (got.clock, got.cpus) == (want.clock, want.cpus)
    assert got.lr == want.lr
    for name in ("loss", "grad_norm", "update_norm", "param_norm", "points"):
        assert_close(getattr(got, name), getattr(want, name), f"{got.spec} {name}")
    assert [sorted(row) for row in got.evals] == [sorted(row) for row in want.evals]
    for row, other in zip(got.evals, want.evals, strict=True):
        assert row["step"] == other["step"]
        for key in row:
            assert_close(row[key], other[key], f"{got.spec} evals[{row['step']}][{key}]")
    assert len(got.time) == len(got.loss) and got.time == sorted(got.time)  # cumulative
    assert got.seconds == got.time[-1] if got.time else got.seconds == 0


def assert_batched_equals_solo(specs: list[RunSpec], build: Any) -> list[Record]:
    got = run_batched(specs, build)
    assert len(got) == len(specs)
    for record, spec in zip(got, specs, strict=True):
        assert_same_run(record, run_one(spec, build))
    return got


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("name", list(WORKLOADS))
def test_batched_runs_equal_one_by_one(name: str, optimizer: str) -> None:
    build = WORKLOADS[name].build
    assert can_batch(name, build)
    if name in HEAVY:  # 4000 samples per evaluation: two lrs, evaluated at the start and end
        lrs = list(WORKLOADS[name].lrs[parse_optimizer(optimizer).name][1:3])
        specs = specs_for(name, optimizer, lrs=lrs, eval_every=4)
    else:
        specs = specs_for(name, optimizer)
    assert_batched_equals_solo(specs, build)


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_a_run_is_the_same_whatever_its_batch(name: str) -> None:
    """Bit for bit, in a batch of six and alone (then beside a spare copy of itself): the
    sweep trains what an interrupted sweep left in smaller batches."""
    eval_every = 4 if name in HEAVY else 2
    specs = specs_for(name, "adamw", steps=4, eval_every=eval_every)
    build = WORKLOADS[name].build
    together = run_batched(specs, build)
    for k in (0, 3):
        alone = run_batched([specs[k]], build)[0]
        assert (together[k].batch, alone.batch) == (len(specs), 1)
        got, want = dataclasses.asdict(alone), dataclasses.asdict(together[k])
        for key in sorted(set(got) - SWEEP_TIMING):
            assert json.dumps(to_json(got[key])) == json.dumps(to_json(want[key])), key


@pytest.mark.parametrize(
    ("name", "regime"),
    [("linreg", "sgd"), ("linreg", "minibatch:25"), ("noisy-quadratic", "full")],
)
def test_other_regimes(name: str, regime: str) -> None:
    specs = specs_for(name, "adam", regime=regime, steps=5, eval_every=2)
    assert_batched_equals_solo(specs, WORKLOADS[name].build)


def test_every_registry_workload_batches() -> None:
    assert all(can_batch(name, w.build) for name, w in WORKLOADS.items())


@pytest.mark.parametrize(
    ("name", "optimizer", "lrs"),
    [
        ("ravine", "sgd", [1e-2, 10.0, 3e-2]),  # lr 10 grows the loss past the factor
        ("rosenbrock", "momentum", [1e-3, 1e150]),  # one step to an infinite loss, then NaN
        ("digits-mlp", "sgd", [1e-1, 1e200, 3e-1]),  # NaN inside the vmapped model
    ],
)
def test_a_diverging_configuration_leaves_the_others_alone(
    name: str, optimizer: str, lrs: list[float]
) -> None:
    specs = specs_for(name, optimizer, lrs=lrs, steps=12, eval_every=5)
    records = assert_batched_equals_solo(specs, WORKLOADS[name].build)
    for record, spec in zip(records, specs, strict=True):
        diverging = spec.lr == lrs[1]
        assert record.diverged == diverging
        assert len(record.loss) < 12 if diverging else len(record.loss) == 12
        if diverging:  # run_one's last eval row: the step it stopped at, a NaN loss
            assert record.evals[-1]["step"] == len(record.loss)
            assert math.isnan(record.evals[-1]["train_loss"])
    if name != "ravine":
        assert any(not math.isfinite(x) for r in records for x in r.loss)


def test_configurations_may_differ_in_steps_and_eval_every() -> None:
    specs = specs_for("digits-logreg", "adam", seeds=(0,))
    specs[0] = dataclasses.replace(specs[0], steps=3, eval_every=1)
    specs[2] = dataclasses.replace(specs[2], steps=8, eval_every=4)
    records = assert_batched_equals_solo(specs, WORKLOADS["digits-logreg"].build)
    assert [len(r.loss) for r in records] == [3, 4, 8]


def test_batches_of_one_and_of_none() -> None:
    assert run_batched([], WORKLOADS["ravine"].build) == []
    assert_batched_equals_solo(
        specs_for("beale", "adam", seeds=(3,), lrs=[0.1]), WORKLOADS["beale"].build
    )


def _float32_build(seed: int, options: dict[str, Any]) -> Problem:
    """A float32 classifier built like the registry's (not registered: batched on request)."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 8, generator=gen), torch.randint(0, 3, (60,), generator=gen)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    return supervised_problem(
        model, x[:40], y[:40], x[40:], y[40:], torch.nn.functional.cross_entropy, True
    )


@pytest.mark.parametrize("optimizer", ["sgd:momentum=0.9", "rmsprop", "adam", "adamw"])
def test_float32_runs_equal_one_by_one_to_float32_round_off(optimizer: str) -> None:
    specs = [
        RunSpec("f32", parse_optimizer(optimizer), lr, seed, parse_regime("minibatch:8"), 5, 2)
        for lr in (1e-2, 1e-1)
        for seed in (0, 1)
    ]
    for got, spec in zip(run_batched(specs, _float32_build), specs, strict=True):
        want = run_one(spec, _float32_build)
        # float32 round-off (1e-7) of the batched matmuls, carried through 5 steps
        np.testing.assert_allclose(got.loss, want.loss, rtol=1e-5)
        np.testing.assert_allclose(got.update_norm, want.update_norm, rtol=1e-4)
        got_eval = [r["train_loss"] for r in got.evals]
        np.testing.assert_allclose(got_eval, [r["train_loss"] for r in want.evals], rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "optimizer",
    [*OPTIMIZERS, "adam:bias_correction=false", "sgd:maximize=true", "rmsprop:weight_decay=0.1"],
)
def test_batched_update_is_the_drop_in_update_bit_for_bit(
    optimizer: str, dtype: torch.dtype
) -> None:
    """The update alone, on shared gradients: no matmul, so no round-off difference at all."""
    spec = parse_optimizer(optimizer)
    cls = training.OPTIMIZERS[spec.name]
    lrs = [1e-3, 3e-2, 0.5]
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(3, 4, 5, generator=gen, dtype=dtype)
    solo = [torch.nn.Parameter(start[k].clone()) for k in range(3)]
    opts = [
        cls([p], lr=lr, **spec.kwargs(), engine="reference")
        for p, lr in zip(solo, lrs, strict=True)
    ]
    rule = cls.info.rule(opts[0].param_groups[0])
    hps = [cls.info.scalars(opt.param_groups[0]) for opt in opts]
    stacked = start.clone().requires_grad_()
    state = rule.init(stacked.detach())
    for step in range(1, 5):
        grads = torch.randn(3, 4, 5, generator=gen, dtype=dtype)
        for k in range(3):
            solo[k].grad = grads[k].clone()
            opts[k].step()
        stacked.grad = grads
        batched._step_param(rule, stacked, state, batched._coefficients(rule, hps, [step] * 3))
        assert stacked.dtype == dtype
        assert torch.equal(stacked.detach(), torch.stack([p.detach() for p in solo])), step


def test_what_cannot_batch_says_so() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 2))
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))

    def make(m: torch.nn.Module) -> Problem:
        return supervised_problem(m, x, y, None, None, torch.nn.functional.cross_entropy, True)

    user = model_build(model, make)
    registry = WORKLOADS["digits-mlp"].build
    assert not can_batch("my-model", user)  # a user's model
    assert not can_batch("digits-mlp", user)  # a registry name, another build
    assert not can_batch("digits-mlp", WORKLOADS["linreg"].build)
    assert not can_batch("digits-mlp", lambda seed, options: registry(seed, options))  # wrapped
    assert not can_batch("no-such-workload", registry)


def test_unknown_problems_and_mixed_specs_are_refused() -> None:
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)

    def opaque(seed: int, options: dict[str, Any]) -> Problem:
        return Problem([w], lambda indices: (w - 1.0).pow(2).sum(), None)

    specs = specs_for("ravine", "sgd")
    with pytest.raises(ValueError, match="cannot be batched"):
        run_batched(specs, opaque)
    with pytest.raises(ValueError, match="one optimizer spec on one workload"):
        run_batched([*specs, *specs_for("ravine", "adam")], WORKLOADS["ravine"].build)
    with pytest.raises(ValueError, match="one optimizer spec on one workload"):
        run_batched([*specs, *specs_for("saddle", "sgd")], WORKLOADS["ravine"].build)


def test_a_model_with_buffers_is_not_batched() -> None:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 4, generator=gen, dtype=torch.float64), torch.randint(0, 3, (16,))

    def build(seed: int, options: dict[str, Any]) -> Problem:
        torch.manual_seed(seed)
        model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)).double()
        return supervised_problem(model, x, y, None, None, torch.nn.functional.cross_entropy, True)

    with pytest.raises(ValueError, match="cannot be batched"):
        run_batched(specs_for("ravine", "sgd"), build)


def test_problems_name_their_parts() -> None:
    kinds = {name: w.build(0, dict(w.options)).parts["kind"] for name, w in WORKLOADS.items()}
    assert set(kinds.values()) == {"landscape", "quadratic", "supervised"}
    problem = WORKLOADS["digits-mlp"].build(0, {})
    parts = problem.parts
    assert [p for p in parts["model"].parameters()] == problem.params
    assert parts["loss_fn"] is torch.nn.functional.cross_entropy and parts["classification"]
    assert len(parts["x"]) == problem.n_train and parts["x_test"] is not None
    other = WORKLOADS["digits-mlp"].build(1, {})
    assert torch.equal(other.parts["x"], parts["x"]) and other.parts["x"] is not parts["x"]
    assert Problem([torch.zeros(2)], lambda indices: torch.zeros(()), None).parts == {}
