"""The generic behaviours of torch's ``test/test_optim.py``, ported to the drop-ins.

Every check is parametrized over ``impl``: it runs on torch.optim first (the check holds
there, so it states torch's behaviour) and then on descentlab.torch.
"""

from __future__ import annotations

import copy
import functools
import io
import pickle
import types
from typing import Any

import pytest
import torch
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

import descentlab.torch as dt
from helpers import rel_err

# every drop-in with a torch.optim twin (all but the seed's Momentum)
NAMES = tuple(c.__name__ for c in dt.BY_NAME.values() if c.info.torch_twin)
# Muon takes matrices only; Adafactor and Muon refuse complex parameters (as torch's do).
MATRICES_ONLY = {"Muon"}
REAL_ONLY = {"Adafactor", "Muon"}
# descentlab's default engine ("auto") steps these small groups with the reference engine;
# the compiled engine runs every check too.
COMPILED = types.SimpleNamespace(
    **{n: functools.partial(getattr(dt, n), engine="compiled") for n in NAMES}
)
IMPLS = {"torch": torch.optim, "descentlab": dt, "descentlab-compiled": COMPILED}
OURS = (dt, COMPILED)
# Settings that give every optimizer state and exercise its main options.
KWARGS = {
    "SGD": {"lr": 0.05, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01},
    "Adam": {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True},
    "AdamW": {"lr": 0.01, "weight_decay": 0.1},
    "RMSprop": {"lr": 0.01, "momentum": 0.5, "centered": True, "weight_decay": 0.1},
    "Adagrad": {
        "lr": 0.05,
        "lr_decay": 0.01,
        "weight_decay": 0.1,
        "initial_accumulator_value": 0.1,
    },
    "Adadelta": {"lr": 0.5, "rho": 0.8, "weight_decay": 0.1},
    "Adamax": {"lr": 0.01, "betas": (0.8, 0.95), "weight_decay": 0.1},
    "RAdam": {"lr": 0.01, "betas": (0.8, 0.95), "weight_decay": 0.1},
    "NAdam": {"lr": 0.01, "betas": (0.8, 0.95), "weight_decay": 0.1, "momentum_decay": 6e-3},
    "ASGD": {"lr": 0.05, "lambd": 0.01, "t0": 3, "weight_decay": 0.1},
    "Rprop": {"lr": 0.01, "etas": (0.4, 1.3), "step_sizes": (1e-4, 0.5)},
    "Adafactor": {"lr": 0.02, "beta2_decay": -0.7, "d": 1.5, "weight_decay": 0.1},
    "Muon": {"lr": 0.02, "weight_decay": 0.1, "momentum": 0.9},
}
# What makes a zero gradient move a parameter, besides weight decay (ASGD's lambd).
STILL = {"ASGD": {"lambd": 0.0, "weight_decay": 0.0}, "Rprop": {}}


# torch.optim.NAdam's load_state_dict casts the float32 ``mu_product`` to the parameters'
# dtype (float64 here): the resumed run goes on with float64 products, ~1e-11 apart from the
# uninterrupted one, in torch as in descentlab (which keeps torch's behaviour).
RESUMED_TOL = {"NAdam": 1e-9}
# The flags a checkpoint from before they existed may lack: torch.optim.Adafactor (2.5+)
# restores only ``foreach`` (its step raises KeyError: 'maximize' without it).
OLD_FLAGS = {"Adafactor": ("foreach",)}


def _resumed(name: str, resumed: torch.Tensor, uninterrupted: torch.Tensor) -> bool:
    """A run resumed from a checkpoint equals the uninterrupted one: bit for bit, or for
    NAdam to the float32 rounding of ``mu_product`` (see RESUMED_TOL)."""
    if name in RESUMED_TOL:
        return rel_err(resumed, uninterrupted) <= RESUMED_TOL[name]
    return torch.equal(resumed, uninterrupted)


def _compiles(name: str) -> bool:
    """Whether the compiled engine runs this optimizer's rule (an element-wise one)."""
    info = getattr(dt, name).info
    return info.rule(info.with_defaults(**KWARGS[name])).elementwise


TOL = 1e-12


@pytest.fixture(params=list(IMPLS))
def impl(request: pytest.FixtureRequest) -> Any:
    return IMPLS[request.param]


def _params(
    seed: int = 0, dtype: torch.dtype = torch.float64, name: str = ""
) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    shapes = (
        [(4, 3), (3, 2), (2, 5), (5, 2)]
        if name in MATRICES_ONLY
        else [(4, 3), (3,), (2, 2, 2), (5,)]
    )
    return [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype)) for s in shapes]


def _grads(params: list[torch.Tensor], seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)


def _run(opt: torch.optim.Optimizer, params: list[torch.Tensor], seeds: range) -> None:
    for seed in seeds:
        _grads(params, seed)
        opt.step()


def _equal_state(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a.keys() != b.keys():
        return False
    return all(
        torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k]))
        if a[k] is not None
        else b[k] is None
        for k in a
    )


def _equal_dicts(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two state_dicts hold the same groups and the same state, bit for bit."""
    return (
        a["param_groups"] == b["param_groups"]
        and a["state"].keys() == b["state"].keys()
        and all(_equal_state(a["state"][i], b["state"][i]) for i in a["state"])
    )


@pytest.mark.parametrize("name", NAMES)
def test_step_is_a_no_op_without_gradients(impl: Any, name: str) -> None:
    params = _params(name=name)
    before = [p.detach().clone() for p in params]
    opt = getattr(impl, name)(params, **KWARGS[name])
    opt.step()
    assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True))
    if name == "Adagrad":  # creates every parameter's state at once, in torch too
        assert len(opt.state) == len(params)
        assert all(float(state["step"]) == 0 for state in opt.state.values())
    else:
        assert len(opt.state) == 0


@pytest.mark.parametrize("name", NAMES)
def test_zero_gradients_without_decay_leave_parameters_still(impl: Any, name: str) -> None:
    params = _params(name=name)
    before = [p.detach().clone() for p in params]
    opt = getattr(impl, name)(params, **{**KWARGS[name], **STILL.get(name, {"weight_decay": 0.0})})
    for _ in range(3):
        for p in params:
            p.grad = torch.zeros_like(p)
        opt.step()
    assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True))


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_is_deterministic_and_round_trips(impl: Any, name: str) -> None:
    params = _params(name=name)
    opt = getattr(impl, name)(params, **KWARGS[name])
    _run(opt, params, range(4))
    first = opt.state_dict()
    assert _equal_dicts(first, opt.state_dict())  # asking twice gives the same thing
    saved = copy.deepcopy(first)
    twin_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    twin = getattr(impl, name)(twin_params, **KWARGS[name])
    twin.load_state_dict(saved)
    assert _equal_dicts(twin.state_dict(), first)
    buffer = io.BytesIO()  # through torch.save/torch.load, as a checkpoint goes
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    third_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    third = getattr(impl, name)(third_params, **KWARGS[name])
    third.load_state_dict(torch.load(buffer, weights_only=True))
    for seed in range(4, 9):
        for ps, o in ((params, opt), (twin_params, twin), (third_params, third)):
            _grads(ps, seed)
            o.step()
    for p, q, r in zip(params, twin_params, third_params, strict=True):
        assert _resumed(name, q, p) and _resumed(name, r, p)
    if name not in RESUMED_TOL:
        assert _equal_dicts(twin.state_dict(), opt.state_dict())
        assert _equal_dicts(third.state_dict(), opt.state_dict())


@pytest.mark.parametrize("name", NAMES)
def test_named_parameters_are_saved_and_loaded_by_name(impl: Any, name: str) -> None:
    bias = name not in MATRICES_ONLY
    model = torch.nn.Sequential(
        torch.nn.Linear(3, 4, bias=bias), torch.nn.Linear(4, 2, bias=bias)
    ).double()
    opt = getattr(impl, name)(model.named_parameters(), **KWARGS[name])
    _run(opt, list(model.parameters()), range(3))
    saved = opt.state_dict()
    assert saved["param_groups"][0]["param_names"] == [n for n, _ in model.named_parameters()]
    twin = copy.deepcopy(model)
    other = getattr(impl, name)(twin.named_parameters(), **KWARGS[name])
    other.load_state_dict(copy.deepcopy(saved))
    assert _equal_dicts(other.state_dict(), saved)
    for ps, o in ((list(model.parameters()), opt), (list(twin.parameters()), other)):
        _run(o, ps, range(3, 6))
    assert all(
        _resumed(name, q, p) for p, q in zip(model.parameters(), twin.parameters(), strict=True)
    )


@pytest.mark.parametrize("name", NAMES)
def test_older_state_dicts_load_and_continue(impl: Any, name: str) -> None:
    """A checkpoint from before a flag existed (foreach, maximize, fused...) and with a
    plain-number step (before torch 1.12) resumes in lock-step."""
    params = _params(name=name)
    opt = getattr(impl, name)(params, **KWARGS[name])
    _run(opt, params, range(3))
    old = copy.deepcopy(opt.state_dict())
    for group in old["param_groups"]:
        for flag in OLD_FLAGS.get(name, ("foreach", "differentiable", "fused", "maximize")):
            group.pop(flag, None)
    for s in old["state"].values():
        if "step" in s:
            s["step"] = float(s["step"])
    twin_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    twin = getattr(impl, name)(twin_params, **KWARGS[name])
    twin.load_state_dict(old)
    for seed in range(3, 8):
        for ps, o in ((params, opt), (twin_params, twin)):
            _grads(ps, seed)
            o.step()
    for p, q in zip(params, twin_params, strict=True):
        assert rel_err(q, p) <= RESUMED_TOL.get(name, TOL)


@pytest.mark.parametrize("name", NAMES)
def test_hooks_run_in_order_with_their_arguments_and_can_be_removed(impl: Any, name: str) -> None:
    params = _params(name=name)
    opt = getattr(impl, name)(params, **KWARGS[name])
    calls: list[str] = []
    handles = [
        opt.register_step_pre_hook(lambda o, args, kwargs: calls.append("pre") or None),
        opt.register_step_post_hook(lambda o, args, kwargs: calls.append("post")),
        register_optimizer_step_pre_hook(lambda o, args, kwargs: calls.append("global-pre")),
        register_optimizer_step_post_hook(lambda o, args, kwargs: calls.append("global-post")),
    ]
    try:
        _grads(params, 0)
        opt.step()
        assert calls == ["global-pre", "pre", "post", "global-post"]
    finally:
        for h in handles:
            h.remove()
    opt.step()
    assert len(calls) == 4

    seen: list[Any] = []
    opt.register_state_dict_pre_hook(lambda o: seen.append(("sd-pre", o is opt)))

    def sd_post(o: Any, sd: dict) -> dict:
        seen.append(("sd-post", "state" in sd))
        sd["extra"] = 1
        return sd

    opt.register_state_dict_post_hook(sd_post)
    sd = opt.state_dict()
    assert sd["extra"] == 1 and seen == [("sd-pre", True), ("sd-post", True)]

    def load_pre(o: Any, sd: dict) -> dict:
        seen.append(("load-pre", "extra" in sd))
        sd = dict(sd)
        del sd["extra"]
        return sd

    opt.register_load_state_dict_pre_hook(load_pre)
    opt.register_load_state_dict_post_hook(lambda o: seen.append(("load-post", o is opt)))
    opt.load_state_dict(sd)
    assert seen[-2:] == [("load-pre", True), ("load-post", True)]


@pytest.mark.parametrize("name", NAMES)
def test_deepcopy_and_pickle_copy_every_public_attribute(impl: Any, name: str) -> None:
    params = _params(name=name)
    opt = getattr(impl, name)(params, **KWARGS[name])
    _run(opt, params, range(2))

    def public(o: Any) -> set[str]:
        return {k for k in o.__dict__ if not k.startswith("_")}

    copies = [copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))]
    for copied in copies:
        assert public(copied) == public(opt)
        assert _equal_dicts(copied.state_dict(), opt.state_dict())
    _run(opt, params, range(2, 4))
    for copied in copies:
        copied_params = copied.param_groups[0]["params"]
        assert all(p is not q for p, q in zip(params, copied_params, strict=True))
        _run(copied, copied_params, range(2, 4))  # each copy steps its own parameters
        assert all(torch.equal(p, q) for p, q in zip(params, copied_params, strict=True))
        assert _equal_dicts(copied.state_dict(), opt.state_dict())


@pytest.mark.parametrize("name", NAMES)
def test_printing_is_torchs(name: str) -> None:
    shape = (2, 2) if name in MATRICES_ONLY else (2,)
    p = [torch.nn.Parameter(torch.ones(shape))]
    for kwargs in ({}, KWARGS[name]):
        ours, theirs = getattr(dt, name)(p, **kwargs), getattr(torch.optim, name)(p, **kwargs)
        assert repr(ours) == repr(theirs)
        ours.add_param_group({"params": [torch.nn.Parameter(torch.ones(shape))], "lr": 0.5})
        theirs.add_param_group({"params": [torch.nn.Parameter(torch.ones(shape))], "lr": 0.5})
        assert repr(ours) == repr(theirs)


def _lock_step(name: str, kwargs: dict, steps: int, schedule: Any = None) -> None:
    """descentlab against torch.optim with the same gradients (``schedule(opt)`` makes the
    schedulers, stepped after each optimizer step)."""
    results = []
    for impl in (torch.optim, *OURS):
        params = _params(0, name=name)
        opt = getattr(impl, name)(params, **copy.deepcopy(kwargs))
        scheds = schedule(opt) if schedule else []
        for seed in range(steps):
            _grads(params, seed)
            opt.step()
            for s in scheds:
                if isinstance(s, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    s.step(1.0)  # a plateau: it cuts the lr after `patience` epochs
                else:
                    s.step()
        results.append((params, opt))
    (theirs_p, theirs), *ours_runs = results
    counts = ours_runs[1][1].engine_counts  # the fast path ran, or visibly handed over
    assert counts["compiled" if _compiles(name) else "reference"] == 4 * steps
    for ours_p, ours in ours_runs:
        for p, q in zip(ours_p, theirs_p, strict=True):
            assert p.dtype == q.dtype and rel_err(p, q) <= TOL
        assert [g["lr"] for g in ours.param_groups] == [g["lr"] for g in theirs.param_groups]


@pytest.mark.parametrize("name", NAMES)
def test_tensor_lr_runs_in_lock_step(name: str) -> None:
    lr = torch.tensor(KWARGS[name]["lr"], dtype=torch.float64)
    _lock_step(name, {**KWARGS[name], "lr": lr}, 10)


def test_complex_parameters_step_as_their_real_views() -> None:
    """test_optim's check: a complex parameter steps exactly as its view_as_real would."""
    for name in sorted(set(NAMES) - REAL_ONLY):
        for impl in (torch.optim, *OURS):
            z = torch.nn.Parameter(torch.randn(3, 2, dtype=torch.complex128))
            r = torch.nn.Parameter(torch.view_as_real(z.detach()).clone())
            oz = getattr(impl, name)([z], **KWARGS[name])
            orr = getattr(impl, name)([r], **KWARGS[name])
            gen = torch.Generator().manual_seed(4)
            for _ in range(6):
                g = torch.randn(3, 2, dtype=torch.complex128, generator=gen)
                z.grad, r.grad = g, torch.view_as_real(g).clone()
                oz.step()
                orr.step()
            assert rel_err(torch.view_as_real(z.detach()), r) <= TOL, (impl.__name__, name)


@pytest.mark.parametrize("name", NAMES)
def test_add_param_group_mid_run_runs_in_lock_step(name: str) -> None:
    results = []
    for impl in (torch.optim, *OURS):
        params = _params(0, name=name)
        opt = getattr(impl, name)(params[:2], **KWARGS[name])
        _run(opt, params[:2], range(3))
        opt.add_param_group({"params": params[2:], "lr": KWARGS[name]["lr"] * 3})
        with pytest.raises(ValueError, match="some parameters appear in more than one"):
            opt.add_param_group({"params": params[:1]})
        _run(opt, params, range(3, 8))
        results.append((params, opt))
    (theirs_p, theirs), *ours_runs = results
    for ours_p, ours in ours_runs:
        assert all(rel_err(p, q) <= TOL for p, q in zip(ours_p, theirs_p, strict=True))
        assert ours.param_groups[1].keys() == theirs.param_groups[1].keys()


@pytest.mark.parametrize("name", NAMES)
def test_defaults_and_arguments_are_never_mutated(impl: Any, name: str) -> None:
    kwargs = copy.deepcopy(KWARGS[name])
    params = _params(name=name)
    opt = getattr(impl, name)(params, **kwargs)
    defaults = copy.deepcopy(opt.defaults)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    opt.add_param_group({"params": _params(1, name=name)[:1], "lr": 0.3})
    for seed in range(3):
        _grads(params, seed)
        opt.step()
        scheduler.step()
        opt.param_groups[0]["weight_decay"] = 0.2
    assert opt.defaults == defaults
    assert kwargs == KWARGS[name]


SCHEDULERS = {
    name: info.scheduler_inputs
    for info in pytest.importorskip("torch.testing._internal.common_optimizers").optim_db
    if (name := info.optim_cls.__name__) in NAMES
}


@pytest.mark.parametrize(
    ("name", "index"),
    [(n, i) for n in NAMES for i in range(len(SCHEDULERS[n]))],
)
def test_torchs_schedulers_run_in_lock_step(name: str, index: int) -> None:
    """optim_db's scheduler combinations for each optimizer, 30 steps each."""
    makers = SCHEDULERS[name][index]
    _lock_step(name, KWARGS[name], 30, schedule=lambda opt: [m(opt) for m in makers])


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop"])
def test_one_cycle_with_momentum_cycling_runs_in_lock_step(name: str) -> None:
    """OneCycleLR also cycles ``momentum`` (SGD, RMSprop) or ``betas[0]`` (Adam)."""
    _lock_step(
        name,
        {**KWARGS[name], "momentum": 0.9} if name != "Adam" else KWARGS[name],
        25,
        schedule=lambda opt: [
            torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=25)
        ],
    )


@pytest.mark.parametrize("name", NAMES)
def test_mixed_dtypes_in_one_group_run_in_lock_step(name: str) -> None:
    kwargs = KWARGS[name]
    results = []
    for impl in (torch.optim, *OURS):
        torch.manual_seed(0)
        sizes = [(30, 10), (8, 5), (7, 1)] if name in MATRICES_ONLY else [(300,), (40,), (7,)]
        params = [
            torch.nn.Parameter(torch.randn(size, dtype=dtype))
            for size, dtype in zip(
                sizes, (torch.float32, torch.float64, torch.float32), strict=True
            )
        ]
        opt = getattr(impl, name)(params, **kwargs)
        _run(opt, params, range(6))
        results.append(params)
    for ours in results[1:]:
        for p, q in zip(ours, results[0], strict=True):
            assert p.dtype == q.dtype
            assert rel_err(p, q) <= (TOL if p.dtype == torch.float64 else 1e-6)


@pytest.mark.parametrize("fused", [None, False, True])
@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_step_dtype_follows_torch_under_a_float64_default(name: str, fused: Any) -> None:
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        dtypes = []
        for impl in (torch.optim, *OURS):
            p = torch.nn.Parameter(torch.randn(3))
            p.grad = torch.ones(3)
            opt = getattr(impl, name)([p], fused=fused)
            opt.step()
            opt.step()
            dtypes.append(opt.state[p]["step"].dtype)
            assert float(opt.state[p]["step"]) == 2  # counted by every engine
        assert dtypes[0] == dtypes[1] == dtypes[2]
    finally:
        torch.set_default_dtype(old)


def test_a_closure_is_called_once_with_gradients_enabled_and_its_loss_returned(impl: Any) -> None:
    for name in NAMES:
        shape = (1, 2) if name in MATRICES_ONLY else (2,)
        w = torch.nn.Parameter(torch.ones(shape, dtype=torch.float64))
        opt = getattr(impl, name)([w], **KWARGS[name])
        calls: list[bool] = []

        def closure(w: torch.Tensor = w, opt: Any = opt, calls: list = calls) -> torch.Tensor:
            calls.append(torch.is_grad_enabled())
            opt.zero_grad()
            loss = (w**2).sum()
            loss.backward()
            return loss

        with torch.no_grad():
            assert opt.step(closure).item() == 2.0
        assert calls == [True]
