"""The reliability checklist of trusted optimizer libraries, over the whole case table."""

from __future__ import annotations

import copy
import inspect
import pickle
from typing import Any

import pytest
import torch

import descentlab.torch as dt
from cases import ALL_CLASSES, CASES, Case, ids
from helpers import random_params, rel_err


def _grads(params, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)


def _steps(opt, params, seeds) -> None:
    for s in seeds:
        _grads(params, s)
        opt.step()


def _undecayed(case: Case, **hp: Any) -> dict[str, Any]:
    """The case's hyperparameters without any decay toward zero (weight decay, ASGD's
    ``lambd``) where the optimizer has it, updated with ``hp``."""
    defaults = case.cls.info.defaults
    off = {k: 0.0 for k in ("weight_decay", "lambd") if k in defaults}
    return {**case.hp, **off, **hp}


# torch.optim.NAdam's load_state_dict casts the float32 ``mu_product`` to the parameters'
# dtype: a resumed run goes on with float64 products, ~1e-11 apart (torch's behaviour, kept).
RESUME_TOL = {"nadam": 1e-9}


def _equal(a, b) -> bool:
    return all(torch.equal(x.detach(), y.detach()) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_goes_downhill_or_uphill_when_maximizing(case: Case) -> None:
    target = torch.tensor([1.0, -2.0], dtype=torch.float64)
    w = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    hp = _undecayed(case, lr=1e-3)
    opt = case.cls([w], **hp)
    loss = ((w - target) ** 2).sum()
    loss.backward()
    opt.step()
    after = ((w.detach() - target) ** 2).sum()
    assert (after > loss) if hp.get("maximize") else (after < loss)


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_state_dict_round_trip_resumes_in_lock_step(case: Case) -> None:
    a = random_params(1)
    opt = case.make(a)
    _steps(opt, a, range(5))
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    fresh = case.make(b)
    fresh.load_state_dict(copy.deepcopy(opt.state_dict()))
    _steps(opt, a, range(5, 10))
    _steps(fresh, b, range(5, 10))
    if case.name in RESUME_TOL:
        tol = RESUME_TOL[case.name]
        assert all(rel_err(q, p) <= tol for p, q in zip(a, b, strict=True))
        return
    assert _equal(a, b)
    for p, q in zip(a, b, strict=True):
        for key, value in opt.state[p].items():
            assert torch.equal(value, fresh.state[q][key]), key


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_deepcopy_and_pickle(case: Case) -> None:
    a = random_params(2)
    opt = case.make(a)
    _steps(opt, a, range(3))
    clone = copy.deepcopy((a, opt))
    pickled = pickle.loads(pickle.dumps((a, opt)))
    _steps(opt, a, range(3, 6))
    for params, other in (clone, pickled):
        _steps(other, params, range(3, 6))
        assert _equal(a, params)


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_per_group_lr_and_a_frozen_group(case: Case) -> None:
    if case.name == "rprop":
        pytest.skip(
            "lr is Rprop's first step size only; a zero one is raised to step_sizes[0] by the "
            "clip, so lr=0 does not freeze a group (in torch.optim.Rprop either)"
        )
    a, b = random_params(3), random_params(3)
    frozen = [p.detach().clone() for p in a[1:]]
    opt = case.cls([{"params": a[:1]}, {"params": a[1:], "lr": 0.0}], **case.hp)
    _steps(opt, a, range(5))
    assert all(torch.equal(p.detach(), q) for p, q in zip(a[1:], frozen, strict=True))
    single = case.make(b[:1])
    for s in range(5):
        _grads(a, s)
        b[0].grad = a[0].grad.clone()
        single.step()
    assert torch.equal(a[0].detach(), b[0].detach())


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_none_gradients_are_skipped_and_do_not_advance_the_step(case: Case) -> None:
    a = random_params(4)
    opt = case.make(a)
    before = a[1].detach().clone()
    _grads(a, 0)
    a[1].grad = None
    opt.step()
    assert torch.equal(a[1].detach(), before)
    if opt.info.name == "adagrad":  # creates every parameter's state at once, as torch's
        assert float(opt.state[a[1]]["step"]) == 0
    else:
        assert a[1] not in opt.state
    if opt.info.stores_step:
        assert float(opt.state[a[0]]["step"]) == 1
    else:  # SGD's state is torch's: a buffer if it has momentum, else nothing
        assert sorted(opt.state.get(a[0], {})) == sorted(opt.info.rule(opt.defaults).slots)


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_zero_gradients_leave_undecayed_parameters_still(case: Case) -> None:
    a = random_params(5)
    opt = case.cls(a, **_undecayed(case))
    before = [p.detach().clone() for p in a]
    for _ in range(3):
        for p in a:
            p.grad = torch.zeros_like(p)
        opt.step()
    assert _equal(a, before)


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_same_seed_gives_bitwise_identical_runs(case: Case) -> None:
    runs = []
    for _ in range(2):
        a = random_params(6)
        opt = case.make(a)
        _steps(opt, a, range(10))
        runs.append(a)
    assert _equal(*runs)


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_low_precision_dtypes_stay_finite_and_track_float64(case: Case, dtype) -> None:
    hi, lo = random_params(7), random_params(7, dtype)
    opt_hi, opt_lo = case.make(hi), case.make(lo)
    for s in range(10):
        _grads(hi, s)
        for p, q in zip(lo, hi, strict=True):
            p.grad = q.grad.to(dtype)
        opt_hi.step()
        opt_lo.step()
    tol = {torch.float32: 1e-5, torch.bfloat16: 5e-2, torch.float16: 1e-2}[dtype]
    for p, q in zip(lo, hi, strict=True):
        assert p.dtype == dtype and torch.isfinite(p).all()
        assert (p.double() - q).abs().max() <= tol * q.abs().max()
        scalars = ("step", *opt_lo.info.rule(opt_lo.defaults).scalar_names)  # torch's dtype
        assert all(v.dtype == dtype for k, v in opt_lo.state[p].items() if k not in scalars)


def test_float16_adam_with_eps_1e8_does_not_divide_by_zero() -> None:
    # 1e-8 is 0 in float16 and g**2 underflows: done in float16 the first step is 0/0.
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float16))
    opt = dt.Adam([p], lr=1e-3)
    p.grad = torch.tensor([1e-4, -1e-5, 0.0], dtype=torch.float16)
    opt.step()
    assert torch.isfinite(p).all()
    assert p[0].item() == pytest.approx(-1e-3, rel=1e-2)
    assert p[2].item() == 0.0


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_zero_size_and_zero_dim_parameters(case: Case) -> None:
    empty = torch.nn.Parameter(torch.zeros(0, 3, dtype=torch.float64))
    scalar = torch.nn.Parameter(torch.tensor(1.5, dtype=torch.float64))
    opt = case.make([empty, scalar])
    empty.grad, scalar.grad = torch.zeros(0, 3, dtype=torch.float64), torch.tensor(0.5).double()
    opt.step()
    assert empty.shape == (0, 3) and scalar.shape == ()
    assert scalar.item() != 1.5


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_sparse_gradients_are_taken_by_sgd_and_refused_clearly_by_the_others(case: Case) -> None:
    p = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    opt = case.make([p])
    p.grad = torch.tensor([0.0, 2.0, 0.0, 0.0], dtype=torch.float64).to_sparse()
    if not opt.info.sparse_grads:
        with pytest.raises(RuntimeError, match="sparse gradients"):
            opt.step()
        return
    dense = case.make([q := torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))])
    q.grad = p.grad.to_dense()
    opt.step()
    dense.step()
    assert torch.equal(p.detach(), q.detach()) and p[1] != 0


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_non_finite_gradients_propagate_by_default_and_can_be_skipped(case: Case) -> None:
    a = random_params(8)
    opt = case.make(a)
    _grads(a, 0)
    a[0].grad[0, 0] = float("nan")
    opt.step()
    if case.name == "rprop":  # it moves by sign(g), and torch's sign of NaN is 0
        assert torch.isnan(opt.state[a[0]]["prev"]).any() and torch.isfinite(a[0]).all()
    else:
        assert torch.isnan(a[0]).any()  # the documented default, as torch.optim

    b = random_params(8)
    guarded = case.cls(b, **case.hp, skip_nonfinite=True)
    _steps(guarded, b, [0])
    snapshot = [p.detach().clone() for p in b]
    state = copy.deepcopy(guarded.state_dict())
    _grads(b, 1)
    b[2].grad[0, 0, 0] = float("inf")
    guarded.step()
    assert _equal(b, snapshot) and guarded.skipped_steps == 1
    after = guarded.state_dict()["state"]
    assert after.keys() == state["state"].keys()
    for i, saved in state["state"].items():
        assert saved.keys() == after[i].keys()
        assert all(torch.equal(saved[k], after[i][k]) for k in saved)


def test_step_with_closure_returns_the_loss_and_zero_grad_works() -> None:
    w = torch.nn.Parameter(torch.ones(2))
    opt = dt.Adam([w])

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == 2.0
    opt.zero_grad(set_to_none=False)
    assert torch.equal(w.grad, torch.zeros(2))
    opt.zero_grad()
    assert w.grad is None


def test_repr_names_the_class_and_hyperparameters() -> None:
    text = repr(dt.AdamW([torch.nn.Parameter(torch.ones(1))], lr=0.5))
    assert text.startswith("AdamW (") and "lr: 0.5" in text and "weight_decay: 0.01" in text


def test_add_param_group_validates_before_adding() -> None:
    opt = dt.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    with pytest.raises(ValueError, match=r"Invalid learning rate: -1"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(1))], "lr": -1})
    assert len(opt.param_groups) == 1
    opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(1))], "momentum": 0.9})
    assert opt.param_groups[1]["momentum"] == 0.9 and opt.param_groups[1]["lr"] == 0.1


def _p():
    return [torch.nn.Parameter(torch.ones(2))]


BAD = [
    (dt.SGD, {"lr": -0.1}, ValueError, r"SGD: Invalid learning rate: -0.1 \(valid: lr >= 0\)"),
    (
        dt.SGD,
        {"momentum": -0.5},
        ValueError,
        r"Invalid momentum value: -0.5 \(valid: momentum >= 0\)",
    ),
    (dt.SGD, {"nesterov": True}, ValueError, r"nesterov=True needs momentum > 0"),
    (dt.SGD, {"momentum": 0.9, "dampening": 0.1, "nesterov": True}, ValueError, "dampening = 0"),
    (dt.SGD, {"weight_decay": -1e-4}, ValueError, r"Invalid weight_decay value: -0.0001"),
    (
        dt.Adam,
        {"betas": (1.0, 0.999)},
        ValueError,
        r"Invalid beta parameter at index 0: 1.0 \(valid: 0 <= betas\[0\] < 1\)",
    ),
    (dt.Adam, {"betas": (0.9, -0.1)}, ValueError, r"Invalid beta parameter at index 1: -0.1"),
    (dt.Adam, {"betas": (0.9,)}, ValueError, r"betas must be a pair"),
    (dt.Adam, {"eps": -1.0}, ValueError, r"Invalid epsilon value: -1.0 \(valid: eps >= 0\)"),
    (dt.Adam, {"lr": float("nan")}, ValueError, r"Invalid learning rate: nan"),
    (dt.Adam, {"lr": float("inf")}, ValueError, r"Invalid learning rate: inf"),
    (dt.Adam, {"lr": "fast"}, TypeError, r"lr must be a number, got 'fast'"),
    (dt.Adam, {"amsgrad": 1}, TypeError, r"amsgrad must be True or False"),
    (dt.Adam, {"differentiable": True}, ValueError, r"differentiable=True .* is not supported"),
    (dt.AdamW, {"weight_decay": -0.01}, ValueError, r"AdamW: Invalid weight_decay value"),
    (dt.RMSprop, {"alpha": -0.5}, ValueError, r"Invalid alpha value: -0.5 \(valid: alpha >= 0\)"),
    (dt.RMSprop, {"eps": -1e-8}, ValueError, r"Invalid epsilon value"),
    (dt.Momentum, {"momentum": 1.0}, ValueError, r"Momentum: Invalid momentum value: 1.0"),
]


@pytest.mark.parametrize(("cls", "kwargs", "error", "match"), BAD)
def test_invalid_hyperparameters_raise_naming_parameter_value_and_range(cls, kwargs, error, match):
    with pytest.raises(error, match=match):
        cls(_p(), **kwargs)


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_bad_parameter_collections_are_refused(cls) -> None:
    with pytest.raises(ValueError, match="empty parameter list"):
        cls([])
    with pytest.raises(TypeError, match="iterable of Tensors"):
        cls(3)
    with pytest.raises(TypeError, match="single tensor"):
        cls(torch.nn.Parameter(torch.ones(1)))
    p = torch.nn.Parameter(torch.ones(1, 1))  # a matrix: Muon takes nothing else
    with pytest.raises(ValueError, match="more than one parameter group"):
        cls([{"params": [p]}, {"params": [p]}])


SCHEDULERS = {
    "StepLR": lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5),
    "MultiStepLR": lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [2, 5]),
    "ConstantLR": lambda o: torch.optim.lr_scheduler.ConstantLR(o, factor=0.5, total_iters=4),
    "LinearLR": lambda o: torch.optim.lr_scheduler.LinearLR(o, total_iters=5),
    "ExponentialLR": lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.9),
    "PolynomialLR": lambda o: torch.optim.lr_scheduler.PolynomialLR(o, total_iters=8),
    "CosineAnnealingLR": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=6),
    "CosineAnnealingWarmRestarts": lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        o, T_0=3
    ),
    "LambdaLR": lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda e: 1 / (1 + e)),
    "MultiplicativeLR": lambda o: torch.optim.lr_scheduler.MultiplicativeLR(o, lambda e: 0.95),
    "CyclicLR": lambda o: torch.optim.lr_scheduler.CyclicLR(o, 1e-3, 1e-1, step_size_up=3),
    "OneCycleLR": lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=12),
    "SequentialLR": lambda o: torch.optim.lr_scheduler.SequentialLR(
        o,
        [
            torch.optim.lr_scheduler.ConstantLR(o, 0.3, total_iters=2),
            torch.optim.lr_scheduler.ExponentialLR(o, 0.8),
        ],
        milestones=[2],
    ),
    "ChainedScheduler": lambda o: torch.optim.lr_scheduler.ChainedScheduler(
        [
            torch.optim.lr_scheduler.ConstantLR(o, 0.5, total_iters=3),
            torch.optim.lr_scheduler.ExponentialLR(o, 0.9),
        ]
    ),
    "ReduceLROnPlateau": lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, patience=1),
}


def test_every_torch_scheduler_is_covered() -> None:
    base = torch.optim.lr_scheduler.LRScheduler
    names = {
        n
        for n, c in vars(torch.optim.lr_scheduler).items()
        if inspect.isclass(c)
        and (issubclass(c, base) or n == "ReduceLROnPlateau")
        and n not in ("LRScheduler", "_LRScheduler")
    }
    assert names <= set(SCHEDULERS), names - set(SCHEDULERS)


@pytest.mark.parametrize("name", list(SCHEDULERS))
@pytest.mark.parametrize(
    ("ours", "theirs", "hp"),
    [
        (dt.SGD, torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
        (dt.Adam, torch.optim.Adam, {"lr": 0.1}),
    ],
    ids=["SGD", "Adam"],
)
def test_torch_schedulers_drive_the_drop_ins_exactly_as_torch_optim(name, ours, theirs, hp):
    a, b = random_params(9), random_params(9)
    opt_a, opt_b = ours(a, **hp), theirs(b, **hp)
    sch_a, sch_b = SCHEDULERS[name](opt_a), SCHEDULERS[name](opt_b)
    for s in range(12):
        for opt, params in ((opt_a, a), (opt_b, b)):
            _grads(params, s)
            opt.step()
        if name == "ReduceLROnPlateau":
            sch_a.step(1.0)
            sch_b.step(1.0)
        else:
            sch_a.step()
            sch_b.step()
        assert opt_a.param_groups[0]["lr"] == opt_b.param_groups[0]["lr"]
    for p, q in zip(a, b, strict=True):
        assert (p - q).abs().max() <= 1e-12 * q.abs().max()
