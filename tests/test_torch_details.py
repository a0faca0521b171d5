"""Details where descentlab must do exactly what torch.optim does (each checked on torch too)."""

from __future__ import annotations

import copy

import pytest
import torch

from cases import CASES, Case, ids
from helpers import random_params, rel_err

TWINNED = [c for c in CASES if c.twin is not None and c.state_scale == 1.0]


@pytest.mark.parametrize("case", TWINNED, ids=ids(TWINNED))
def test_a_checkpoint_with_plain_number_steps_resumes_in_lock_step(case: Case) -> None:
    """Older torch releases saved ``step`` as a Python number; torch still loads them."""
    assert case.twin is not None
    source = random_params(1)
    torch_opt = case.twin(source)
    gen = torch.Generator().manual_seed(2)
    for _ in range(3):
        for p in source:
            p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        torch_opt.step()
    old = copy.deepcopy(torch_opt.state_dict())
    for s in old["state"].values():
        if "step" in s:
            s["step"] = float(s["step"])

    ours_params, theirs_params = random_params(1), random_params(1)
    for a, b, c in zip(ours_params, theirs_params, source, strict=True):
        a.data.copy_(c.data)
        b.data.copy_(c.data)
    ours, theirs = case.make(ours_params), case.twin(theirs_params)
    ours.load_state_dict(copy.deepcopy(old))
    theirs.load_state_dict(copy.deepcopy(old))
    for _ in range(5):
        for a, b in zip(ours_params, theirs_params, strict=True):
            a.grad = torch.randn(a.shape, generator=gen, dtype=a.dtype)
            b.grad = a.grad.clone()
        ours.step()
        theirs.step()
    for a, b in zip(ours_params, theirs_params, strict=True):
        assert rel_err(a, b) <= 1e-12
        for key, value in theirs.state[b].items():
            assert rel_err(torch.as_tensor(ours.state[a][key]), torch.as_tensor(value)) <= 1e-12


BAD = [
    ({"lr": torch.tensor([0.1, 0.2])}, ValueError),
    ({"lr": "0.01"}, TypeError),
    ({"foreach": True, "fused": True}, RuntimeError),
]


@pytest.mark.parametrize(("kwargs", "error"), BAD, ids=["2-element-lr", "string-lr", "both"])
@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_bad_arguments_raise_torchs_error_type(name: str, kwargs: dict, error: type) -> None:
    import descentlab.torch as dt

    for module in (torch.optim, dt):  # the error type is torch's own
        with pytest.raises(error):
            getattr(module, name)(random_params(0), **kwargs)


@pytest.mark.parametrize("engine", ["reference", "compiled"])
def test_sgd_momentum_switched_on_mid_run_starts_its_buffer_at_the_gradient(engine: str) -> None:
    import descentlab.torch as dt

    def run(make):  # type: ignore[no-untyped-def]
        params = random_params(3)
        opt = make(params)
        gen = torch.Generator().manual_seed(4)
        for step in range(8):
            if step == 3:
                opt.param_groups[0]["momentum"] = 0.9
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            opt.step()
        return params, opt

    hp = {"lr": 0.1, "momentum": 0.0, "dampening": 0.5}
    ours, opt = run(lambda ps: dt.SGD(ps, **hp, engine=engine))
    theirs, ref = run(lambda ps: torch.optim.SGD(ps, **hp))
    for a, b in zip(ours, theirs, strict=True):
        assert rel_err(a, b) <= 1e-12
        assert rel_err(opt.state[a]["momentum_buffer"], ref.state[b]["momentum_buffer"]) <= 1e-12
    if engine == "compiled":
        assert opt.engine_counts["compiled"] == 8 * 3
