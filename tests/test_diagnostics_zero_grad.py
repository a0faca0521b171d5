"""The one zero-grad detector: each way of resetting ``.grad`` is seen, summing is not
mistaken for a reset, and both readers (the guard and telemetry) see what it sees."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
from torch import nn

from descentlab import guard, telemetry
from descentlab.diagnostics.zero_grad import ZeroGradDetector


def _zero_in_place(w: torch.Tensor) -> None:
    assert w.grad is not None
    w.grad.zero_()


def _set_none(w: torch.Tensor) -> None:
    w.grad = None


def _new_zeros(w: torch.Tensor) -> None:
    w.grad = torch.zeros_like(w)


RESETS: dict[str, Callable[[torch.Tensor], None]] = {
    "set_to_none": _set_none,
    "zero_in_place": _zero_in_place,
    "new_zero_tensor": _new_zeros,
}


@pytest.mark.parametrize("reset", RESETS)
def test_each_reset_is_seen(reset: str) -> None:
    w = nn.Parameter(torch.ones(3))
    detector = ZeroGradDetector(w)
    w.sum().backward()
    RESETS[reset](w)
    w.sum().backward()
    assert (detector.since_reset, detector.since_step, detector.discards) == (1, 2, 1)
    detector.remove()
    w.sum().backward()  # detached: counts nothing more
    assert detector.since_step == 2


def test_summing_passes_is_not_a_reset() -> None:
    w = nn.Parameter(torch.ones(3))
    detector = ZeroGradDetector(w)
    for _ in range(3):
        w.sum().backward()
    detector.step_taken()
    assert w.grad is not None
    w.grad.mul_(0.5)  # touched but not zero (clipping): read, and still a sum
    w.sum().backward()
    assert (detector.since_reset, detector.since_step, detector.discards) == (4, 1, 0)


def test_an_untouched_zero_sum_is_not_a_reset() -> None:
    """A gradient that sums to exactly zero is still a sum: only the very tensor the last
    pass left, at the same version, is trusted untouched, and it is not read."""
    w = nn.Parameter(torch.ones(3))
    detector = ZeroGradDetector(w)
    for _ in range(3):
        (w * 0).sum().backward()
    assert (detector.since_reset, detector.discards) == (3, 0)


def test_lazy_reads_nothing_right_after_a_step() -> None:
    w = nn.Parameter(torch.ones(3))
    detector = ZeroGradDetector(w, lazy=True)
    w.sum().backward()
    detector.step_taken()
    _zero_in_place(w)  # a reset with nothing pending: nothing is discarded, nothing read
    w.sum().backward()
    assert detector.discards == 0 and detector.pending == 1
    _zero_in_place(w)  # now the pass since the step is thrown away
    w.sum().backward()
    assert detector.discards == 1 and detector.pending == 1


# -- as telemetry reads it: a skipped step ---------------------------------------------------


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1))


def _backward(model: nn.Module, k: int, *, zero_bias: bool = False) -> None:
    x = torch.linspace(-1, 1, 8).reshape(2, 4) * (1 + 0.1 * k)
    out = model(x)
    if zero_bias:  # the last layer's bias (telemetry's probe, the smallest) gets exactly 0
        out = out - model[2].bias + model[2].bias.detach()
    out.pow(2).mean().backward()


@pytest.mark.parametrize("reset", RESETS)
def test_telemetry_counts_a_step_skipped_by_each_reset(reset: str) -> None:
    """Gradients summed and then reset without a step: one skipped step, however reset."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tm = telemetry(opt, model, every=1)
    for k in range(4):
        if k == 2:  # this iteration's gradients are thrown away: no step
            _backward(model, k)
            for p in model.parameters():
                RESETS[reset](p)
        _backward(model, k)
        opt.step()
        for p in model.parameters():
            RESETS[reset](p)
    assert (tm.steps, tm.skipped_steps) == (4, 1)


@pytest.mark.parametrize(("clip", "zero_bias"), [(False, False), (True, False), (False, True)])
def test_telemetry_accumulation_is_not_a_skip(clip: bool, zero_bias: bool) -> None:
    """Micro-batches summing into ``.grad`` (clipped in between, or summing to exactly
    zero) are no skipped step. (A zero sum that clipping then touches cannot be told from
    ``zero_grad``: both leave a touched all-zero tensor.)"""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tm = telemetry(opt, model, every=1)
    for step in range(3):
        opt.zero_grad(set_to_none=False)
        for k in range(3):
            _backward(model, 3 * step + k, zero_bias=zero_bias)
            if clip:
                nn.utils.clip_grad_norm_(model.parameters(), 1e-3)
        opt.step()
    assert (tm.steps, tm.skipped_steps) == (3, 0)


# -- as the guard reads it: gradients carried into a later step -------------------------------


def _guarded(zeroing: Callable[[nn.Module], None] | None, *, zero_bias: bool = False) -> list[str]:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        handle = guard(opt, model, max_update_ratio=None)
        for k in range(3):
            _backward(model, k, zero_bias=zero_bias)
            opt.step()
            if zeroing is not None:
                zeroing(model)
    return [f.param for f in handle.findings if f.kind == "grad_accumulation"]


@pytest.mark.parametrize("reset", RESETS)
def test_guard_is_silent_after_each_reset(reset: str) -> None:
    def zeroing(model: nn.Module) -> None:
        for p in model.parameters():
            RESETS[reset](p)

    assert _guarded(zeroing) == []


def test_guard_catches_a_carried_gradient_even_when_it_sums_to_zero() -> None:
    """Never zeroed: every parameter carries its gradient, the one whose gradient is
    exactly zero included (an untouched zero sum is no reset)."""
    model_names = [name for name, _ in _model().named_parameters()]
    assert _guarded(None) == [model_names[0]]

    def zero_all_but_the_bias(model: nn.Module) -> None:
        for name, p in model.named_parameters():
            if name != "2.bias":
                _zero_in_place(p)

    assert _guarded(zero_all_but_the_bias, zero_bias=True) == ["2.bias"]
