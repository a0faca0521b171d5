"""Details where descentlab must do exactly what torch.optim does (each checked on torch too)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

import descentlab.torch as dt
from cases import CASES, Case, ids
from helpers import random_params, rel_err

TWINNED = [c for c in CASES if c.twin is not None and c.state_scale == 1.0]


def _step_alike(ours, theirs, ours_params, theirs_params, gen, steps):  # type: ignore[no-untyped-def]
    """``steps`` steps of both optimizers on the same random gradients."""
    for _ in range(steps):
        for a, b in zip(ours_params, theirs_params, strict=True):
            a.grad = torch.randn(a.shape, generator=gen, dtype=a.dtype)
            b.grad = a.grad.clone()
        ours.step()
        theirs.step()


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
    _step_alike(ours, theirs, ours_params, theirs_params, gen, 5)
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


@pytest.mark.parametrize("engine", ["reference", "compiled", "flat-eager"])
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
    if engine != "reference":
        assert opt.engine_counts[engine] == 8 * 3
    # A buffer dropped mid-run (popped, or None as torch leaves it) starts again at the
    # gradient, in torch and on every engine.
    ref_params = list(ref.param_groups[0]["params"])
    for o, ps in ((opt, ours), (ref, ref_params)):
        o.state[ps[0]].pop("momentum_buffer")
        o.state[ps[1]]["momentum_buffer"] = None
        for p in ps:
            p.grad = torch.full_like(p, 0.5)
        o.step()
    for a, b in zip(ours, ref_params, strict=True):
        assert rel_err(a, b) <= 1e-12
        assert rel_err(opt.state[a]["momentum_buffer"], ref.state[b]["momentum_buffer"]) <= 1e-12


# Differences listed in the README, each shown on torch.optim too.


def test_differentiable_and_capturable_are_refused_at_construction() -> None:
    import descentlab.torch as dt

    p = [torch.nn.Parameter(torch.ones(2))]
    torch.optim.Adam(p, differentiable=True)  # torch differentiates through the step
    for flag in ("differentiable", "capturable"):
        with pytest.raises(ValueError, match=f"{flag}=True .* is not supported"):
            dt.Adam(p, **{flag: True})


@pytest.mark.parametrize("engine", ["reference", "compiled"])
def test_sgd_takes_sparse_gradients_as_torchs_sgd_does_on_every_engine(engine: str) -> None:
    import descentlab.torch as dt

    def sparse_step(cls):  # type: ignore[no-untyped-def]
        torch.manual_seed(0)
        emb = torch.nn.Embedding(5, 3, sparse=True)
        opt = cls(emb.parameters(), lr=0.1)
        emb(torch.tensor([1, 2])).sum().backward()
        opt.step()
        return emb.weight.detach(), opt

    want, _ = sparse_step(torch.optim.SGD)
    got, opt = sparse_step(lambda ps, lr: dt.SGD(ps, lr=lr, engine=engine))
    assert torch.equal(got, want)
    assert opt.engine_counts["reference"] == 1  # the compiled kernel reads dense gradients


FOREIGN = [
    ("SGD", "Adam"),
    ("Adam", "SGD"),
    ("RMSprop", "SGD"),
    ("SGD", "RMSprop"),
    ("AdamW", "RMSprop"),
]


@pytest.mark.parametrize(("loader", "saver"), FOREIGN, ids=[f"{a}<-{b}" for a, b in FOREIGN])
def test_a_checkpoint_of_another_optimizer_is_refused_at_load(loader: str, saver: str) -> None:
    import descentlab.torch as dt

    params = random_params(5)
    source = (
        getattr(torch.optim, saver)(params, lr=0.01, momentum=0.9)
        if saver != "Adam"
        else (torch.optim.Adam(params, lr=0.01))
    )
    for p in params:
        p.grad = torch.ones_like(p)
    source.step()
    saved = source.state_dict()
    theirs = getattr(torch.optim, loader)(random_params(5), lr=0.5)
    with pytest.raises((KeyError, RuntimeError, TypeError)):  # torch fails at load or step
        theirs.load_state_dict(copy.deepcopy(saved))
        for p in theirs.param_groups[0]["params"]:
            p.grad = torch.ones_like(p)
        theirs.step()
    ours = getattr(dt, loader)(random_params(5), lr=0.5)
    with pytest.raises(ValueError, match=f"{loader}: this state_dict was saved by another"):
        ours.load_state_dict(copy.deepcopy(saved))


def test_the_seeds_momentum_refuses_a_heavy_ball_checkpoint() -> None:
    """Same state key (momentum_buffer), another convention: refused by its group keys."""
    import descentlab.torch as dt

    params = random_params(5)
    sgd = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    with pytest.raises(ValueError, match="has dampening, nesterov"):
        dt.Momentum(random_params(5)).load_state_dict(sgd.state_dict())
    with pytest.raises(ValueError, match="lacks dampening, nesterov"):
        dt.SGD(random_params(5)).load_state_dict(dt.Momentum(random_params(5)).state_dict())


def test_non_finite_hyperparameters_are_refused() -> None:
    import descentlab.torch as dt

    p = [torch.nn.Parameter(torch.ones(2))]
    torch.optim.SGD(p, lr=float("inf"))  # torch checks lr >= 0 only
    with pytest.raises(ValueError, match="Invalid learning rate: inf"):
        dt.SGD(p, lr=float("inf"))


@pytest.mark.parametrize("engine", ["reference", "compiled"])
def test_a_float32_tensor_lr_gives_adam_a_double_precision_step_size(engine: str) -> None:
    """torch computes lr / (1 - beta1**t) in the lr tensor's dtype; descentlab on the host in
    double precision, so a float32 tensor lr equals a float64 one bit for bit."""
    import descentlab.torch as dt

    def run(cls, lr):  # type: ignore[no-untyped-def]
        params = random_params(6)
        opt = cls(params, lr=lr)
        for seed in range(5):
            gen = torch.Generator().manual_seed(seed)
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            opt.step()
        return params

    lr32 = torch.tensor(0.01)
    exact = run(torch.optim.Adam, torch.tensor(float(lr32), dtype=torch.float64))
    ours = run(lambda ps, lr: dt.Adam(ps, lr=lr, engine=engine), lr32.clone())
    theirs = run(torch.optim.Adam, lr32.clone())
    assert all(rel_err(a, b) <= 1e-12 for a, b in zip(ours, exact, strict=True))
    worst = max(rel_err(a, b) for a, b in zip(theirs, exact, strict=True))
    assert 1e-12 < worst < 1e-6  # torch's float32 rounding of the step size


ACCEPTED = [
    ("Adam", {"eps": 0.0}),
    ("RMSprop", {"eps": 0.0}),
    ("SGD", {"momentum": 1.0}),
    ("SGD", {"momentum": 0.9, "dampening": -0.5}),
    ("RMSprop", {"alpha": 1.0}),
    ("RMSprop", {"momentum": 1.5}),
    ("Adam", {"lr": 0.0, "weight_decay": 0.0}),
]


@pytest.mark.parametrize(("name", "kwargs"), ACCEPTED, ids=[f"{n}-{k}" for n, k in ACCEPTED])
def test_what_torch_accepts_is_accepted_and_steps_alike(name: str, kwargs: dict) -> None:
    import descentlab.torch as dt

    ours_p, theirs_p = random_params(7), random_params(7)
    ours, theirs = (
        getattr(dt, name)(ours_p, **kwargs),
        getattr(torch.optim, name)(theirs_p, **kwargs),
    )
    _step_alike(ours, theirs, ours_p, theirs_p, torch.Generator().manual_seed(0), 3)
    for p, q in zip(ours_p, theirs_p, strict=True):
        assert torch.equal(p.isnan(), q.isnan())
        assert rel_err(torch.nan_to_num(p), torch.nan_to_num(q)) <= 1e-12


@pytest.mark.parametrize(
    ("saver", "loader"),
    [
        (torch.optim.RAdam, dt.Adamax),  # same group keys (betas, eps): the state tells
        (torch.optim.Adam, dt.Adamax),
        (torch.optim.Adamax, dt.Adam),
        (torch.optim.Adagrad, dt.Adadelta),
        (torch.optim.Adadelta, dt.Adagrad),
    ],
)
def test_a_checkpoint_of_a_look_alike_optimizer_is_refused(saver: Any, loader: Any) -> None:
    p = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    theirs = saver([p])
    p.grad = torch.ones(3, dtype=torch.float64)
    theirs.step()
    with pytest.raises(ValueError, match="another optimizer"):
        loader([torch.nn.Parameter(torch.ones(3, dtype=torch.float64))]).load_state_dict(
            theirs.state_dict()
        )
    twin = getattr(dt, saver.__name__, None)
    if twin is not None:  # its own twin's checkpoint loads
        twin([torch.nn.Parameter(torch.ones(3))]).load_state_dict(theirs.state_dict())


@pytest.mark.parametrize("engine", ["eager", "reference"])
def test_a_group_s_rule_is_built_again_only_when_a_value_may_have_changed(
    engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rule and the numbers of a group are kept from step to step while the group holds
    the same immutable values: a scheduler's new ``lr`` and a tensor ``lr`` (which may change
    in place) are read again at every step, and the steps equal torch.optim's."""
    info = dt.SGD.info
    built = {"n": 0}
    real = info.scalars

    def counted(hp):  # type: ignore[no-untyped-def]
        built["n"] += 1
        return real(hp)

    monkeypatch.setattr(type(info), "scalars", lambda self, hp: counted(hp))
    for lr, schedule, expected in (
        (0.1, False, 1),  # built once, kept
        (0.1, True, 6),  # a new float every step
        (torch.tensor(0.1), False, 6),  # a tensor: read every step
    ):
        built["n"] = 0
        params = [torch.nn.Parameter(torch.ones(300, 300)) for _ in range(2)]
        twin = [torch.nn.Parameter(torch.ones(300, 300)) for _ in range(2)]
        lr_twin = lr.clone() if isinstance(lr, torch.Tensor) else lr
        ours = dt.SGD(params, lr=lr, momentum=0.9, engine=engine)
        theirs = torch.optim.SGD(twin, lr=lr_twin, momentum=0.9)
        for step in range(6):
            for p, q in zip(params, twin, strict=True):
                p.grad = torch.full_like(p, 0.5 + step)
                q.grad = p.grad.clone()
            ours.step()
            theirs.step()
            for opt in (ours, theirs):
                group = opt.param_groups[0]
                if isinstance(group["lr"], torch.Tensor):
                    group["lr"].mul_(0.5)  # in place: the same object
                elif schedule:
                    group["lr"] = group["lr"] * 0.5
        assert built["n"] == expected, (lr, schedule)
        for p, q in zip(params, twin, strict=True):
            assert torch.allclose(p, q, rtol=1e-6, atol=1e-7)
