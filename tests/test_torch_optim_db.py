"""torch's own optimizer test material (``optim_db``), run against the drop-ins.

``torch/testing/_internal/common_optimizers.py`` lists, per optimizer, the configurations
torch tests (``optim_inputs_func``) and the bad inputs with the error torch expects
(``optim_error_inputs_func``). Every configuration runs here in lock-step with torch.optim
in float64 for 36 steps, through a step without gradients, a frozen layer thawed mid-run
and an lr edit, on the reference and the compiled engine; every bad input must raise
torch's error type, with torch's wording or one naming the argument.
"""

from __future__ import annotations

import copy
import re
import warnings
from typing import Any

import pytest
import torch

import descentlab.torch as dt
from helpers import rel_err

common_optimizers = pytest.importorskip("torch.testing._internal.common_optimizers")
OptimizerErrorEnum = common_optimizers.OptimizerErrorEnum

# every drop-in with a torch.optim twin (all but the seed's Momentum)
NAMES = tuple(c.__name__ for c in dt.BY_NAME.values() if c.info.torch_twin)
MATRICES_ONLY = {"Muon"}  # torch.optim.Muon refuses biases: it gets the weight matrices
INFOS = {
    info.optim_cls.__name__: info
    for info in common_optimizers.optim_db
    if info.optim_cls.__name__ in NAMES
}
STEPS = 36
TOL = 1e-12


def _configs() -> list[Any]:
    out = []
    for name in NAMES:
        for cfg in INFOS[name].optim_inputs_func(device="cpu", dtype=torch.float64):
            out.append(pytest.param(name, cfg, id=f"{name}-{cfg.desc.replace(' ', '_')}"))
    return out


def _fresh(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A copy: a tensor lr must not be shared by the two optimizers under comparison."""
    return {
        k: v.clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v) for k, v in kwargs.items()
    }


def _model(seed: int) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(5, 8),
        torch.nn.Tanh(),
        torch.nn.Linear(8, 8),
        torch.nn.Tanh(),
        torch.nn.Linear(8, 2),
    ).double()


def _same(
    ours: torch.optim.Optimizer, theirs: torch.optim.Optimizer, pairs: list, skip: tuple = ()
) -> None:
    for p, q in pairs:
        assert rel_err(p, q) <= TOL
        s, t = ours.state.get(p, {}), theirs.state.get(q, {})
        assert sorted(s) == sorted(t)  # torch's state keys, no more, no fewer
        for key, value in t.items():
            if key == "step":
                assert float(s[key]) == float(value) and s[key].dtype == value.dtype
            elif value is not None:
                assert rel_err(s[key], value) <= TOL, key
    for g, h in zip(ours.param_groups, theirs.param_groups, strict=True):
        assert sorted(g) == sorted(h)  # torch's group keys, no more, no fewer
        for key in h:
            if key != "params" and key not in skip:
                assert _value(g[key]) == _value(h[key]), key


def _value(v: Any) -> Any:
    if isinstance(v, tuple | list):
        return tuple(_value(x) for x in v)
    return v.item() if isinstance(v, torch.Tensor) else v


def _lock_step(
    name: str, kwargs: dict[str, Any], engine: str, torch_kwargs: dict[str, Any] | None = None
) -> None:
    """Train two copies of a model, one with torch.optim (``torch_kwargs``, by default the
    same as ``kwargs``), one with the drop-in; compare parameters, state and groups at
    every step."""
    models = _model(0), _model(0)
    frozen = [m[2] for m in models]
    for layer in frozen:
        layer.requires_grad_(False)
    chosen = [
        [p for p in m.parameters() if name not in MATRICES_ONLY or p.ndim == 2] for m in models
    ]
    theirs = getattr(torch.optim, name)(
        chosen[0], **_fresh(kwargs if torch_kwargs is None else torch_kwargs)
    )
    ours = getattr(dt, name)(chosen[1], engine=engine, **_fresh(kwargs))
    pairs = list(zip(chosen[1], chosen[0], strict=True))
    gen = torch.Generator().manual_seed(1)
    for step in range(STEPS):
        x = torch.randn(16, 5, generator=gen, dtype=torch.float64)
        y = torch.randn(16, 2, generator=gen, dtype=torch.float64)
        if step == 24:  # the frozen layer thaws: its parameters start at step 1
            for layer in frozen:
                layer.requires_grad_(True)
        if step == 16:  # an lr edit mid-run, as a user or a scheduler makes it
            for opt in (theirs, ours):
                for group in opt.param_groups:
                    if isinstance(group["lr"], torch.Tensor):
                        group["lr"].fill_(group["lr"] * 0.5)
                    else:
                        group["lr"] = group["lr"] * 0.5
        for model, opt in zip(models, (theirs, ours), strict=True):
            opt.zero_grad()
            if step != 10:  # step 10 has no gradients at all: nothing may change
                torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
        _same(ours, theirs, pairs, skip=("foreach",) if torch_kwargs else ())
    counts = ours.engine_counts
    if engine in ("compiled", "eager") and ours.info.rule(ours.defaults).elementwise:
        assert counts[engine] > 0 and counts["reference"] == 0
    else:
        assert counts["reference"] > 0 and counts["compiled"] == counts["eager"] == 0


@pytest.mark.parametrize(("name", "cfg"), _configs())
@pytest.mark.parametrize("engine", ["reference", "eager", "compiled"])
def test_every_optim_db_configuration_runs_in_lock_step_with_torch(
    name: str, cfg: Any, engine: str
) -> None:
    lr = cfg.kwargs.get("lr")
    if name in TENSOR_ARITHMETIC and isinstance(lr, torch.Tensor) and lr.dtype != torch.float64:
        # torch.optim.Muon computes 1 - lr * weight_decay in the tensor lr's dtype (float32),
        # descentlab in float64 (a difference listed in the README): torch gets the same lr
        # as a float64 tensor, and must then agree to round-off.
        _lock_step(name, cfg.kwargs, engine, {**cfg.kwargs, "lr": lr.double()})
        return
    _lock_step(name, cfg.kwargs, engine)


TENSOR_ARITHMETIC = {"Muon"}


# torch refuses these only because its foreach kernels cannot take a tensor lr or tensor
# betas; descentlab computes them (a difference listed in the README).
COMPUTED_INSTEAD = ("lr as a Tensor is not supported", r"betas\[0\] as a Tensor is not supported")


def _computed_instead(err: Any) -> bool:
    return err.error_regex.startswith(COMPUTED_INSTEAD)


def _errors() -> list[Any]:
    out = []
    for name in NAMES:
        for err in INFOS[name].optim_error_inputs_func(device="cpu", dtype=torch.float64):
            desc = err.optimizer_error_input.desc
            out.append(pytest.param(name, err, id=f"{name}-{desc.replace(' ', '_')[:40]}"))
    return out


def _raise(cls: type, err: Any) -> BaseException | None:
    cfg = err.optimizer_error_input
    params = copy.deepcopy(cfg.params)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter(
                "error", err.error_type if issubclass(err.error_type, Warning) else UserWarning
            )
            opt = cls(params, **_fresh(cfg.kwargs))
            if err.error_on == OptimizerErrorEnum.STEP_ERROR:
                opt.step()
    except Exception as exc:
        return exc
    return None


@pytest.mark.parametrize(("name", "err"), _errors())
def test_every_optim_db_error_input_raises_torchs_error_type(name: str, err: Any) -> None:
    theirs = _raise(getattr(torch.optim, name), err)
    assert isinstance(theirs, err.error_type), "the expectation holds for torch.optim itself"
    assert re.search(err.error_regex, str(theirs))
    if _computed_instead(err):  # see test_tensor_hyperparameters_with_foreach_...
        getattr(dt, name)(
            [torch.nn.Parameter(torch.ones(2))], **_fresh(err.optimizer_error_input.kwargs)
        )
        return
    ours = _raise(getattr(dt, name), err)
    assert isinstance(ours, err.error_type), f"{type(ours).__name__}: {ours}"
    kwargs = err.optimizer_error_input.kwargs
    named = [k for k in kwargs if k in str(ours)] or ["params" in str(ours)]
    assert re.search(err.error_regex, str(ours)) or any(named), str(ours)


@pytest.mark.parametrize(
    "kwargs",
    [
        # float64 tensors: with a float32 tensor lr, torch computes lr / (1 - beta1**t) in
        # float32 (descentlab in float64), a difference listed in the README.
        {"lr": torch.tensor(0.01, dtype=torch.float64), "foreach": True},
        {
            "lr": 0.01,
            "betas": (
                torch.tensor(0.8, dtype=torch.float64),
                torch.tensor(0.95, dtype=torch.float64),
            ),
            "foreach": True,
        },
    ],
    ids=["tensor-lr", "tensor-betas"],
)
@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_tensor_hyperparameters_with_foreach_are_computed_not_refused(
    name: str, kwargs: dict
) -> None:
    with pytest.raises(ValueError, match="not supported for capturable=False and foreach=True"):
        getattr(torch.optim, name)([torch.nn.Parameter(torch.ones(2))], **_fresh(kwargs))
    for engine in ("reference", "compiled"):  # torch's for-loop computes it; so do we
        _lock_step(name, kwargs, engine, torch_kwargs={**kwargs, "foreach": False})
