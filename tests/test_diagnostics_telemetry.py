"""Telemetry: what it measures is what the step did, and measuring never changes the step."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import descentlab.torch as dt
from descentlab import telemetry


def _model(dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2)
    ).to(dtype)


def _train(model: torch.nn.Module, opt: torch.optim.Optimizer, steps: int, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    for _ in range(steps):
        x = torch.randn(16, 6, generator=gen).to(dtype)
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()


def _by_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make telemetry measure descentlab's optimizers the generic way (a copy): their
    engines decline to measure, as the flat engines do."""
    monkeypatch.setattr(dt.RuleOptimizer, "measure_next_step", lambda self: False)


def test_sgd_update_is_lr_times_gradient() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    tm = telemetry(opt, model, every=1, per_tensor=True)
    _train(model, opt, 3)
    assert [s.step for s in tm.history if s.param == ""] == [1, 2, 3]
    for s in tm.history:
        assert s.lr == 0.05
        assert s.update_norm == pytest.approx(0.05 * s.grad_norm, rel=1e-5)
        if s.param_norm > 0:  # the LayerNorm bias starts at 0: its ratio is nan
            assert s.ratio == pytest.approx(s.update_norm / s.param_norm)
        else:
            assert math.isnan(s.ratio)
    names = {s.param for s in tm.history if s.param}
    assert names == {name for name, _ in model.named_parameters()}
    group = next(s for s in tm.history if s.step == 1 and s.param == "")
    tensors = [s for s in tm.history if s.step == 1 and s.param]
    total = math.sqrt(sum(s.update_norm**2 for s in tensors))
    assert group.update_norm == pytest.approx(total, rel=1e-6)


@pytest.mark.parametrize("engine", ["reference", "eager", "compiled"])
def test_adam_first_step_moves_every_element_by_lr(engine: str) -> None:
    # Adam's first update is lr * g / (|g| + eps): lr per element with a non-zero gradient.
    p = torch.nn.Parameter(torch.randn(64, 64, dtype=torch.float64))
    opt = dt.Adam([p], lr=1e-3, engine=engine)
    tm = telemetry(opt, every=1)
    p.grad = torch.randn(64, 64, dtype=torch.float64)
    opt.step()
    (s,) = tm.history
    assert s.update_norm == pytest.approx(1e-3 * 64, rel=1e-6)
    assert s.grad_norm == pytest.approx(float(p.grad.norm()), rel=1e-12)
    assert tm.engine_samples == 1
    assert opt.engine_counts[engine] == 1


@pytest.mark.parametrize("engine", ["reference", "eager", "compiled"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_engine_measurement_equals_the_copy(
    engine: str, dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sums made inside the step equal norms of a copy taken around it, on every engine."""
    runs = []
    for by_copy in (False, True):
        if by_copy:
            _by_copy(monkeypatch)
        model = _model(dtype)
        opt = dt.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1, engine=engine)
        tm = telemetry(opt, model, every=2, per_tensor=True)
        _train(model, opt, 5)
        assert tm.engine_samples == (0 if by_copy else 3)
        assert opt.engine_counts[engine] > 0
        runs.append(tm.rows())
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    assert len(runs[0]) == len(runs[1]) == 3 * 7  # 3 samples x (group + 6 tensors)
    for a, b in zip(*runs, strict=True):
        assert (a["step"], a["param"]) == (b["step"], b["param"])
        for key in ("grad_norm", "update_norm", "param_norm", "ratio"):
            assert a[key] == pytest.approx(b[key], rel=tol, nan_ok=True), (a, b, key)


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: torch.optim.AdamW(ps, lr=1e-2),
        lambda ps: torch.optim.SGD(ps, lr=1e-2, momentum=0.9),
        lambda ps: dt.AdamW(ps, lr=1e-2, engine="compiled"),
        lambda ps: dt.SGD(ps, lr=1e-2, momentum=0.9),
        lambda ps: dt.RMSprop(ps, lr=1e-3, engine="flat"),
    ],
    ids=["torch-adamw", "torch-sgd", "adamw-compiled", "sgd", "rmsprop-flat"],
)
def test_telemetry_never_changes_the_run(make) -> None:  # type: ignore[no-untyped-def]
    finals = []
    for watched in (False, True):
        model = _model()
        opt = make(list(model.parameters()))
        tm = telemetry(opt, model, every=3, per_tensor=True) if watched else None
        _train(model, opt, 7)
        finals.append([p.detach().clone() for p in model.parameters()])
        finals.append([v.clone() for s in opt.state.values() for v in s.values()])
        if tm is not None:
            assert [s.step for s in tm.history if s.param == ""] == [1, 4, 7]
            tm.remove()
    for a, b in zip(finals[0] + finals[1], finals[2] + finals[3], strict=True):
        assert torch.equal(a, b)


def test_skipped_steps_counted() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4)
    tm = telemetry(opt, model, every=1)
    gen = torch.Generator().manual_seed(0)
    for step in range(4):
        opt.zero_grad()
        loss = model(torch.randn(4, 6, generator=gen)).pow(2).mean()
        if step == 1:
            loss = loss * float("inf")  # the scaler finds inf and skips this step
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    opt.zero_grad()
    model(torch.randn(4, 6, generator=gen)).sum().backward()  # the next backward sees it
    assert tm.steps == 3
    assert tm.skipped_steps == 1

    # descentlab's own skip_nonfinite is counted too, and its sample says nothing moved
    model = _model()
    opt2 = dt.SGD(model.parameters(), lr=0.1, skip_nonfinite=True)
    tm2 = telemetry(opt2, model, every=1)
    opt2.zero_grad()
    model(torch.full((2, 6), float("nan"))).sum().backward()
    opt2.step()
    assert tm2.skipped_steps == 1
    assert tm2.history[0].update_norm == 0.0


def test_gradient_accumulation_is_not_a_skip() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tm = telemetry(opt, model, every=1)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        opt.zero_grad()
        for _ in range(4):  # four micro-batches per step
            model(torch.randn(4, 6, generator=gen)).pow(2).mean().backward()
        opt.step()
    assert tm.skipped_steps == 0 and tm.steps == 3


def test_series_rows_and_errors() -> None:
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with telemetry(opt, model, every=2) as tm:
        _train(model, opt, 5)
    steps, lrs = tm.series("lr")
    assert steps == [1, 3, 5] and lrs == [1e-3] * 3
    assert set(tm.rows()[0]) == {"step", "group", "param", "lr", "grad_norm", "update_norm",
                                 "param_norm", "ratio", "moment_underflow"}  # fmt: skip
    with pytest.raises(ValueError, match="choose one of: lr, grad_norm"):
        tm.series("loss")
    with pytest.raises(ValueError, match="every must be an integer >= 1"):
        telemetry(opt, every=0)
    _train(model, opt, 2)  # removed by the with block: nothing more recorded
    assert len(tm.history) == 3


def test_tensorboard_export(tmp_path) -> None:  # type: ignore[no-untyped-def]
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator"
    )
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tm = telemetry(opt, model, every=2, per_tensor=True)
    _train(model, opt, 4)
    tm.to_tensorboard(tmp_path)
    acc = event_accumulator.EventAccumulator(str(tmp_path))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"optimizer/group0/ratio", "optimizer/0.weight/update_norm"} <= tags
    assert "optimizer/skipped_steps" in tags
    ratio = [e.value for e in acc.Scalars("optimizer/group0/ratio")]
    assert ratio == pytest.approx(tm.series("ratio")[1], rel=1e-6)


def test_the_copy_is_allocated_once() -> None:
    """Generic optimizers are measured through one copy per parameter, reused every sample."""
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    tm = telemetry(opt, model, every=1)
    _train(model, opt, 1)
    first = {k: v.data_ptr() for k, v in tm._meter._buffers.items()}
    _train(model, opt, 3)
    assert len(first) == len(list(model.parameters())) == len(tm._meter._buffers)
    assert {k: v.data_ptr() for k, v in tm._meter._buffers.items()} == first
    tm.remove()
    assert tm._meter._buffers == {}


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=["float16", "float32"])
def test_an_underflowing_float16_second_moment_is_measured_and_named(
    dtype: torch.dtype,
) -> None:
    """Pure float16 AdamW with ordinary small gradients: the mean of squared gradients is 0
    for the weights that move, each sample says what share, and one warning says what to do
    (float32: 0 and silent)."""
    from descentlab import PitfallWarning

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.Linear(32, 1)).to(dtype)
    opt = dt.AdamW(model.parameters(), lr=1e-3)
    tm = telemetry(opt, model, every=5, per_tensor=True)
    x = torch.randn(16, 32).to(dtype)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(10):
            opt.zero_grad()
            (model(x).float().square().mean() * 1e-4).backward()
            opt.step()
    shares = [s.moment_underflow for s in tm.history]
    assert len(shares) == 2 * 5  # 2 sampled steps: the group and its 4 tensors
    messages = [str(w.message) for w in caught if issubclass(w.category, PitfallWarning)]
    if dtype == torch.float16:
        assert min(s.moment_underflow for s in tm.history if s.param == "") > 0.5
        assert len(messages) == 1 and "float32 master weights" in messages[0]
        assert tm.series("moment_underflow")[1][0] == shares[0]
    else:
        assert shares == [0.0] * 10 and messages == []
    tm.remove()
