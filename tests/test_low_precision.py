"""float16 that overflows: a running mean of squares that leaves float16's range must not
turn the parameters into NaN where torch.optim keeps them finite (torch writes it
``v * beta2 + (1 - beta2) * g * g``: an overflow stays inf and the step divides to 0).

Gradients of 1e4 in float16: g**2 = 1e8 is past float16's 65504. torch.optim computes in
float16 and descentlab in float32 rounded once, so the values differ where torch
overflows earlier; what must hold is that every weight torch keeps finite stays finite
here, on the torch front end and the NumPy one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import descentlab.torch as dt
from descentlab import numpy as dnp

NAMES = [c.__name__ for c in dt.BY_NAME.values() if c.info.torch_twin and c.__name__ != "Muon"]
SHAPES = [(8, 4), (4,)]
STEPS = 6


def _grads(step: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(step)
    return [(torch.randn(s, generator=gen) * 1e4).clamp(-6e4, 6e4).half() for s in SHAPES]


def _params() -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(99)
    return [torch.nn.Parameter(torch.randn(s, generator=gen).half()) for s in SHAPES]


@pytest.mark.parametrize("name", NAMES)
def test_float16_overflowing_moments_never_make_nan_where_torch_stays_finite(name: str) -> None:
    ours_p, theirs_p = _params(), _params()
    ours = getattr(dt, name)(ours_p, lr=1e-3)
    theirs = getattr(torch.optim, name)(theirs_p, lr=1e-3)
    host = [p.detach().float().numpy().astype(np.float16) for p in ours_p]
    fn = getattr(dnp, name.lower())(lr=1e-3)
    state = fn.init(host)
    for step in range(STEPS):
        grads = _grads(step)
        for opt, ps in ((ours, ours_p), (theirs, theirs_p)):
            for p, g in zip(ps, grads, strict=True):
                p.grad = g.clone()
            opt.step()
        with np.errstate(invalid="ignore"):  # checked below: NaN only where torch's is
            host, state = fn.update(
                host, [g.float().numpy().astype(np.float16) for g in grads], state
            )
        for mine, arr, its in zip(ours_p, host, theirs_p, strict=True):
            finite = torch.isfinite(its)
            assert torch.isfinite(mine)[finite].all(), f"step {step}: NaN/inf where torch is finite"
            assert np.isfinite(arr)[finite.numpy()].all(), f"step {step}: NumPy API non-finite"
