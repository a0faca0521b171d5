"""descentlab.torch against torch.optim, and the NumPy driver against the torch driver."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import descentlab
import descentlab.numpy as dnp
import descentlab.torch as dt
from cases import CASES, TWINNED, Case, ids
from helpers import mlp, random_params, rel_err

STEPS = 60
TOL = 1e-12


@pytest.fixture
def float64_default():
    """The torch drop-ins keep scalar state (NAdam's mu_product, ASGD's eta) in torch's
    default dtype, as torch.optim does; the NumPy API keeps it in the array's precision.
    On float64 arrays the two agree to round-off when float64 is the default."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _compare_state(case: Case, ours: dt.Optimizer, theirs: torch.optim.Optimizer, pairs) -> float:
    worst = 0.0
    for p, q in pairs:
        s_ours, s_theirs = ours.state.get(p, {}), theirs.state.get(q, {})
        assert sorted(s_ours) == sorted(s_theirs)  # torch's state keys, no more
        if "step" in s_theirs:
            assert float(s_ours["step"]) == float(s_theirs["step"])
            assert s_ours["step"].dtype == s_theirs["step"].dtype
        for key, value in s_theirs.items():
            if key == "step" or value is None:
                continue
            worst = max(worst, rel_err(s_ours[key], case.state_scale * value))
    return worst


@pytest.mark.parametrize("case", TWINNED, ids=ids(TWINNED))
def test_random_gradients_match_torch_optim(case: Case) -> None:
    ours_p, theirs_p = random_params(1), random_params(1)
    ours, theirs = case.make(ours_p), case.twin(theirs_p)
    gen = torch.Generator().manual_seed(2)
    for _ in range(STEPS):
        for p, q in zip(ours_p, theirs_p, strict=True):
            g = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            p.grad, q.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
    for p, q in zip(ours_p, theirs_p, strict=True):
        assert rel_err(p, q) <= TOL
    assert _compare_state(case, ours, theirs, zip(ours_p, theirs_p, strict=True)) <= TOL


def _mlp_run(case: Case, *, shared_gradients: bool) -> tuple[list, list, float]:
    """Train two copies of an MLP, one with descentlab, one with the torch.optim twin.

    With ``shared_gradients`` both optimizers receive the gradient computed on the twin's
    model, so the comparison measures the optimizer alone; without it each model trains in
    its own closed loop, where round-off differences feed back through the loss.
    ``maximize`` cases ascend the negated loss, so every run is a descent.
    """
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(64, 8, generator=gen, dtype=torch.float64)
    y = torch.sin(x.sum(1, keepdim=True))
    sign = -1.0 if case.hp.get("maximize") else 1.0
    a, b = mlp(4), mlp(4)
    ours, theirs = case.make(a.parameters()), case.twin(b.parameters())
    for _ in range(STEPS):
        for model, opt in ((b, theirs), (a, ours)):
            opt.zero_grad()
            (sign * torch.nn.functional.mse_loss(model(x), y)).backward()
        if shared_gradients:
            for p, q in zip(a.parameters(), b.parameters(), strict=True):
                p.grad = q.grad.clone()
        theirs.step()
        ours.step()
    pairs = list(zip(a.parameters(), b.parameters(), strict=True))
    param_err = max(rel_err(p, q) for p, q in pairs)
    return pairs, [ours, theirs], param_err


@pytest.mark.parametrize("case", TWINNED, ids=ids(TWINNED))
def test_mlp_gradients_match_torch_optim(case: Case) -> None:
    pairs, (ours, theirs), param_err = _mlp_run(case, shared_gradients=True)
    assert param_err <= TOL
    assert _compare_state(case, ours, theirs, pairs) <= TOL


@pytest.mark.parametrize("case", TWINNED, ids=ids(TWINNED))
def test_mlp_closed_loop_training_tracks_torch_optim(case: Case) -> None:
    # Each model computes its own gradients: last-bit differences (fused multiply-adds in
    # torch's kernels) are amplified by the training dynamics, yet stay far below 1e-9.
    _, _, param_err = _mlp_run(case, shared_gradients=False)
    assert param_err <= 1e-9


@pytest.mark.parametrize("case", TWINNED, ids=ids(TWINNED))
def test_float32_matches_torch_optim_closely(case: Case) -> None:
    ours_p, theirs_p = random_params(5, torch.float32), random_params(5, torch.float32)
    ours, theirs = case.make(ours_p), case.twin(theirs_p)
    gen = torch.Generator().manual_seed(6)
    for _ in range(20):
        for p, q in zip(ours_p, theirs_p, strict=True):
            g = torch.randn(p.shape, generator=gen)
            p.grad, q.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
    for p, q in zip(ours_p, theirs_p, strict=True):
        assert rel_err(p, q) <= 1e-5


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
@pytest.mark.usefixtures("float64_default")
def test_numpy_driver_equals_torch_driver(case: Case) -> None:
    params = random_params(7)
    arrays = [p.detach().numpy().copy() for p in params]
    ours = case.make(params)
    functional = dnp.Transformation(case.name, **case.hp)
    state = functional.init(arrays)
    gen = np.random.default_rng(8)
    for _ in range(30):
        grads = [gen.standard_normal(a.shape) for a in arrays]
        for p, g in zip(params, grads, strict=True):
            p.grad = torch.from_numpy(g.copy())
        ours.step()
        arrays, state = functional.update(arrays, grads, state)
    for p, a, s in zip(params, arrays, state.slots, strict=True):
        assert rel_err(torch.from_numpy(a), p) <= TOL
        for key, value in s.items():
            assert rel_err(torch.from_numpy(value), ours.state[p][key]) <= TOL


def _late_grads(step: int, arrays: list[np.ndarray], gen: np.random.Generator) -> list:
    """Random gradients; the second array gets none for the first 4 steps, the third none on
    every third step: per-parameter step counts are then all different."""
    grads: list = [gen.standard_normal(a.shape) for a in arrays]
    if step < 4:
        grads[1] = None
    if step % 3 == 2:
        grads[2] = None
    return grads


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
@pytest.mark.usefixtures("float64_default")
def test_numpy_counts_steps_per_array_as_the_torch_drop_ins(case: Case) -> None:
    params = random_params(11)[:3]
    arrays = [p.detach().numpy().copy() for p in params]
    in_place = [a.copy() for a in arrays]
    ours = case.make(params)
    functional = dnp.Transformation(case.name, **case.hp)
    obj = getattr(dnp, case.cls.__name__)(in_place, engine="reference", **case.hp)
    state = functional.init(arrays)
    gen = np.random.default_rng(12)
    for step in range(12):
        grads = _late_grads(step, arrays, gen)
        for p, g in zip(params, grads, strict=True):
            p.grad = None if g is None else torch.from_numpy(g.copy())
        ours.step()
        arrays, state = functional.update(arrays, grads, state)
        obj.step(grads)
    assert state.steps == obj.state.steps == [12, 8, 8]
    for p, a, b, s in zip(params, arrays, in_place, state.slots, strict=True):
        assert rel_err(torch.from_numpy(a), p) <= TOL
        assert rel_err(torch.from_numpy(b), p) <= TOL
        for key, value in s.items():
            assert rel_err(torch.from_numpy(value), ours.state[p][key]) <= TOL
        if ours.info.stores_step:
            assert [int(ours.state[q]["step"]) for q in params] == state.steps


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_numpy_float16_is_computed_in_float32_like_the_torch_drop_ins(case: Case) -> None:
    # g = 1e-4 squares to 1e-8, which is 0 in float16: computed in float16, Adam's first
    # step divides by zero (-inf, nan); in float32 it is the ordinary lr-sized step.
    w = np.array([0.5, 0.0, 1.0], dtype=np.float16)
    p = torch.nn.Parameter(torch.from_numpy(w.copy()))
    ours = case.make([p])
    functional = dnp.Transformation(case.name, **case.hp)
    arrays, state = [w.copy()], functional.init([w.copy()])
    obj = getattr(dnp, case.cls.__name__)([w.copy()], engine="reference", **case.hp)
    gen = np.random.default_rng(13)
    for step in range(10):
        g = np.array([1e-4, 0.0, 1.0], dtype=np.float16) if step == 0 else None
        g = gen.standard_normal(3).astype(np.float16) if g is None else g
        p.grad = torch.from_numpy(g.copy())
        ours.step()
        arrays, state = functional.update(arrays, [g], state)
        obj.step([g])
        assert arrays[0].dtype == np.float16 and np.isfinite(arrays[0]).all()
        np.testing.assert_array_equal(arrays[0], p.detach().numpy())
        np.testing.assert_array_equal(obj.params[0], p.detach().numpy())
        for key, value in state.slots[0].items():
            theirs = ours.state[p][key].numpy()  # float16; scalars (mu_product) float32
            assert value.dtype == theirs.dtype == (np.float16 if theirs.ndim else np.float32)
            np.testing.assert_array_equal(value, theirs)


def test_numpy_state_dict_round_trips_per_array_steps_and_reads_the_older_format() -> None:
    w = [np.ones(3), np.ones(2)]
    opt = dnp.Adam(w, lr=0.1)
    opt.step([np.ones(3), None])
    saved = opt.state_dict()
    assert saved["steps"] == [1, 0]
    again = dnp.Adam([np.ones(3), np.ones(2)], lr=0.1)
    again.load_state_dict(saved)
    assert again.state.steps == [1, 0]
    again.load_state_dict({"step": 5, "slots": saved["slots"]})  # one shared count
    assert again.state.steps == [5, 5]


@pytest.mark.parametrize("name", ["SGD", "RMSprop", "Adam", "AdamW"])
def test_signatures_and_defaults_equal_torch(name: str) -> None:
    import inspect

    theirs = inspect.signature(getattr(torch.optim, name).__init__).parameters
    ours = inspect.signature(getattr(dt, name).__init__).parameters
    for key, param in theirs.items():
        assert key in ours, f"{name} lacks torch's argument {key!r}"
        assert ours[key].default == param.default, key
        assert ours[key].kind == param.kind, key
    p = [torch.nn.Parameter(torch.zeros(2))]
    torch_defaults = getattr(torch.optim, name)(p).defaults
    our_defaults = getattr(dt, name)(p).defaults
    assert {k: v for k, v in our_defaults.items() if k in torch_defaults} == torch_defaults


# Muon takes matrices only, where the case table's tests step vectors and 3-D tensors too:
# tests/test_muon.py holds it to the same checks on matrices (and optim_db, the generic port).
MATRICES_ONLY = {"muon"}


def test_every_public_optimizer_is_in_the_case_table() -> None:
    covered = {c.name for c in CASES}
    assert covered | MATRICES_ONLY == set(descentlab.list_optimizers())
    public = {
        obj
        for obj in map(dt.__dict__.get, dt.__all__)
        if isinstance(obj, type)
        and issubclass(obj, dt.RuleOptimizer)
        and obj is not dt.RuleOptimizer
    }
    assert {c.cls for c in CASES} | {dt.BY_NAME[n] for n in MATRICES_ONLY} == public
    assert {n for n in dnp.__all__ if n[0].isupper()} - {
        "Optimizer",
        "State",
        "Transformation",
    } == {c.__name__ for c in public}


SAME_STATE = [c for c in TWINNED if c.state_scale == 1.0]  # EMA-form buffers are rescaled


@pytest.mark.parametrize("case", SAME_STATE, ids=ids(SAME_STATE))
def test_state_dict_moves_between_torch_optim_and_descentlab(case: Case) -> None:
    a, b = random_params(9), random_params(9)
    theirs = case.twin(a)
    gen = torch.Generator().manual_seed(10)

    def grads() -> list[torch.Tensor]:
        return [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in a]

    for _ in range(5):
        for p, g in zip(a, grads(), strict=True):
            p.grad = g
        theirs.step()
    with torch.no_grad():
        for p, q in zip(a, b, strict=True):
            q.copy_(p)
    ours = case.make(b)
    ours.load_state_dict(copy.deepcopy(theirs.state_dict()))
    for _ in range(5):
        for p, q, g in zip(a, b, grads(), strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        theirs.step()
        ours.step()
    # torch.optim.NAdam's load casts mu_product to the parameters' float64 (ours too)
    tol = 1e-9 if case.name == "nadam" else TOL
    for p, q in zip(a, b, strict=True):
        assert rel_err(q, p) <= tol
    c = [torch.nn.Parameter(p.detach().clone()) for p in b]
    back = case.twin(c)
    back.load_state_dict(copy.deepcopy(ours.state_dict()))  # and back into torch.optim
    for p, q, g in zip(b, c, grads(), strict=True):
        p.grad, q.grad = g.clone(), g.clone()
    ours.step()
    back.step()
    for p, q in zip(b, c, strict=True):
        assert rel_err(q, p) <= TOL


def test_complex_parameters_match_torch() -> None:
    for name in ("Adam", "RMSprop", "SGD"):
        p = torch.nn.Parameter(torch.randn(4, dtype=torch.complex128))
        q = torch.nn.Parameter(p.detach().clone())
        kw = {"lr": 0.01, "momentum": 0.9} if name != "Adam" else {"lr": 0.01}
        ours, theirs = getattr(dt, name)([p], **kw), getattr(torch.optim, name)([q], **kw)
        for _ in range(10):
            g = torch.randn(4, dtype=torch.complex128)
            p.grad, q.grad = g.clone(), g.clone()
            ours.step()
            theirs.step()
        assert rel_err(p, q) <= TOL, name
