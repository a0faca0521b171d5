"""Muon, on matrices: the checks of the case table (tests/cases.py), which steps vectors too.

torch.optim.Muon refuses anything but 2-D parameters, and so does the drop-in; its optim_db
configurations and the generic port run in tests/test_torch_optim_db.py and
tests/test_torch_generic.py. Here: the NumPy API against the drop-in, every engine handing
the rule to the reference (it multiplies matrices), low precision, resuming, refusals.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import descentlab.numpy as dnp
import descentlab.torch as dt
from descentlab.rules.matrix import bfloat16, newton_schulz
from helpers import rel_err

SHAPES = [(6, 4), (3, 5), (4, 4)]
HP = {"lr": 0.02, "momentum": 0.9, "weight_decay": 0.05}


def _matrices(seed: int, dtype: torch.dtype = torch.float64) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.nn.Parameter(torch.randn(s, generator=gen, dtype=torch.float64).to(dtype))
        for s in SHAPES
    ]


def _grads(params: list[torch.Tensor], seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype)


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("adjust_lr_fn", [None, "match_rms_adamw"])
def test_equals_torch_optim_muon_on_every_engine(nesterov: bool, adjust_lr_fn: str | None) -> None:
    kwargs = {**HP, "nesterov": nesterov, "adjust_lr_fn": adjust_lr_fn}
    theirs_p = _matrices(0)
    theirs = torch.optim.Muon(theirs_p, **kwargs)
    runs = []
    for engine in ("reference", "compiled", "auto"):
        params = _matrices(0)
        runs.append((params, dt.Muon(params, engine=engine, **kwargs)))
    for seed in range(20):
        _grads(theirs_p, seed)
        theirs.step()
        for params, opt in runs:
            _grads(params, seed)
            opt.step()
    for params, opt in runs:
        # not element-wise: every engine hands it to the reference, visibly
        assert opt.engine_counts["reference"] == 20 * len(SHAPES)
        assert opt.engine_counts["compiled"] == 0
        for p, q in zip(params, theirs_p, strict=True):
            assert rel_err(p, q) <= 1e-12
            assert sorted(opt.state[p]) == sorted(theirs.state[q]) == ["momentum_buffer"]
            assert (
                rel_err(opt.state[p]["momentum_buffer"], theirs.state[q]["momentum_buffer"])
                <= 1e-12
            )


def test_the_numpy_api_agrees_with_the_drop_in() -> None:
    params = _matrices(1)
    arrays = [p.detach().numpy().copy() for p in params]
    ours = dt.Muon(params, **HP)
    functional = dnp.muon(**HP)
    obj = dnp.Muon([a.copy() for a in arrays], **HP)
    state = functional.init(arrays)
    for seed in range(15):
        _grads(params, seed)
        grads = [p.grad.numpy().copy() for p in params]
        ours.step()
        arrays, state = functional.update(arrays, grads, state)
        obj.step(grads)
    for p, a, b in zip(params, arrays, obj.params, strict=True):
        # bfloat16 emulated in float32 by NumPy: agreement to a few bfloat16 roundings of
        # an update of size lr (measured: ~1e-15 relative on these matrices)
        assert rel_err(torch.from_numpy(a), p) <= 1e-6
        assert rel_err(torch.from_numpy(b), p) <= 1e-6


def test_numpy_bfloat16_rounding_is_torchs() -> None:
    x = np.random.default_rng(0).standard_normal(10_000).astype(np.float32) * 1e3
    x[:4] = [0.0, -0.0, np.inf, 1.0 + 2**-8]  # a tie rounds to even
    want = torch.from_numpy(x).to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(bfloat16(x), want)


def test_newton_schulz_orthogonalizes() -> None:
    g = torch.randn(8, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    o = newton_schulz(g, (3.4445, -4.775, 2.0315), 5, 1e-7).double()
    singular = torch.linalg.svdvals(o)
    assert o.shape == g.shape and singular.min() > 0.5 and singular.max() < 1.5  # ~ U V^T


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_low_precision_matrices_track_float64(dtype: torch.dtype) -> None:
    hi, lo = _matrices(2), _matrices(2, dtype)
    opt_hi, opt_lo = dt.Muon(hi, **HP), dt.Muon(lo, **HP)
    for seed in range(10):
        _grads(hi, seed)
        for p, q in zip(lo, hi, strict=True):
            p.grad = q.grad.to(dtype)
        opt_hi.step()
        opt_lo.step()
    for p, q in zip(lo, hi, strict=True):
        assert p.dtype == opt_lo.state[p]["momentum_buffer"].dtype == dtype
        assert torch.isfinite(p).all()
        assert (p.double() - q).abs().max() <= 5e-2 * q.abs().max()


def test_state_dict_round_trip_resumes_bit_for_bit() -> None:
    a = _matrices(4)
    opt = dt.Muon(a, **HP)
    for seed in range(4):
        _grads(a, seed)
        opt.step()
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    fresh = dt.Muon(b, **HP)
    fresh.load_state_dict(copy.deepcopy(opt.state_dict()))
    back = torch.optim.Muon(c := [torch.nn.Parameter(p.detach().clone()) for p in a], **HP)
    back.load_state_dict(copy.deepcopy(opt.state_dict()))  # and into torch.optim
    for seed in range(4, 8):
        for params, o in ((a, opt), (b, fresh), (c, back)):
            _grads(params, seed)
            o.step()
    for p, q, r in zip(a, b, c, strict=True):
        assert torch.equal(p, q) and rel_err(r, p) <= 1e-12


def test_refuses_what_torch_refuses_with_the_reason() -> None:
    with pytest.raises(ValueError, match="Muon only supports 2D parameters"):
        dt.Muon([torch.nn.Parameter(torch.zeros(3))])
    opt = dt.Muon([torch.nn.Parameter(torch.zeros(2, 2))])
    with pytest.raises(ValueError, match="Muon only supports 2D parameters"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2, 2, 2))]})
    assert len(opt.param_groups) == 1  # the refused group was not kept
    z = torch.nn.Parameter(torch.zeros(2, 2, dtype=torch.complex64))
    z.grad = torch.ones_like(z)
    with pytest.raises(RuntimeError, match="Muon does not support complex parameters"):
        dt.Muon([z]).step()
    with pytest.raises(ValueError, match="Adjust learning rate function x is not supported"):
        dt.Muon([torch.nn.Parameter(torch.zeros(2, 2))], adjust_lr_fn="x")
    with pytest.raises(ValueError, match="ns_steps"):
        dt.Muon([torch.nn.Parameter(torch.zeros(2, 2))], ns_steps=100)
    with pytest.raises(ValueError, match="ns_coefficients"):
        dt.Muon([torch.nn.Parameter(torch.zeros(2, 2))], ns_coefficients=(1.0, 2.0))
