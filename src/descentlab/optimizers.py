"""The registry: every optimizer descentlab offers, its defaults, its checks, its rule.

One :class:`OptimizerInfo` per optimizer is shared by every driver (PyTorch, NumPy, the
lab), so a default or a validity range is written in exactly one place. Defaults are
torch.optim's, so swapping ``torch.optim.Adam`` for ``descentlab.torch.Adam`` changes
nothing but the import.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from . import rules
from .rules.base import Rule

# One glossary of hyperparameters: name -> (is it valid?, the valid range in words).
_RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "lr": (lambda x: x >= 0, "lr >= 0"),
    "momentum": (lambda x: 0 <= x < 1, "0 <= momentum < 1"),
    "dampening": (lambda x: 0 <= x <= 1, "0 <= dampening <= 1"),
    "weight_decay": (lambda x: x >= 0, "weight_decay >= 0"),
    "eps": (lambda x: x > 0, "eps > 0"),
    "alpha": (lambda x: 0 <= x < 1, "0 <= alpha < 1"),
    "beta1": (lambda x: 0 <= x < 1, "0 <= beta1 < 1"),
    "beta2": (lambda x: 0 <= x < 1, "0 <= beta2 < 1"),
}
_FLAGS = (
    "nesterov",
    "maximize",
    "amsgrad",
    "centered",
    "bias_correction",
    "decoupled_weight_decay",
)
# Accepted so that torch.optim call sites keep working; they choose torch's kernels, and
# descentlab chooses its own execution, so they do not change the result.
_TORCH_PERF_FLAGS = ("foreach", "fused")
_UNSUPPORTED = {
    "differentiable": "differentiating through the optimizer step",
    "capturable": "CUDA-graph capture of the step",
}


def _scalar(value: Any) -> float:
    """A hyperparameter as a float (torch allows 1-element tensors for lr)."""
    if isinstance(value, str | bytes):
        raise TypeError(f"expected a number, got the string {value!r}")
    if hasattr(value, "numel") and value.numel() != 1:
        raise ValueError(f"a tensor hyperparameter must have 1 element, got {value.numel()}")
    return float(value.item()) if hasattr(value, "item") else float(value)


@dataclass(frozen=True)
class OptimizerInfo:
    """What descentlab knows about one optimizer.

    Attributes:
        name: registry key, lower case (``"adam"``), as the CLI spells it.
        title: class name, torch's spelling (``"Adam"``).
        summary: one line for listings.
        defaults: every hyperparameter with its default (torch.optim's where it has one).
        structure: maps hyperparameters to the rule; only booleans and "is it zero" decide.
        torch_twin: the torch.optim class with the same convention, if any.
        numeric: hyperparameters read every step (the rest only shape the rule).
    """

    name: str
    title: str
    summary: str
    defaults: Mapping[str, Any]
    structure: Callable[[Mapping[str, Any]], tuple[Callable[..., Rule], dict[str, Any]]]
    torch_twin: str | None = None
    numeric: tuple[str, ...] = field(default=())

    def validate(self, hp: Mapping[str, Any]) -> None:
        """Raise ``ValueError``/``TypeError`` naming the first invalid hyperparameter."""
        for key, value in _flat(hp).items():
            if key in _RANGES:
                try:
                    x = _scalar(value)
                except ValueError as exc:  # torch: "Tensor lr must be 1-element"
                    raise ValueError(f"{self.title}: {key}: {exc}") from None
                except TypeError:
                    raise TypeError(
                        f"{self.title}: {key} must be a number, got {value!r}"
                    ) from None
                ok, valid = _RANGES[key]
                if not math.isfinite(x) or not ok(x):
                    raise ValueError(f"{self.title}: invalid {key} = {value!r} (valid: {valid})")
            elif key in _FLAGS and not isinstance(value, bool):
                raise TypeError(f"{self.title}: {key} must be True or False, got {value!r}")
        for key, what in _UNSUPPORTED.items():
            if hp.get(key):
                raise ValueError(f"{self.title}: {key}=True ({what}) is not supported; use False")
        for key in _TORCH_PERF_FLAGS:
            if hp.get(key) not in (None, True, False):
                raise TypeError(f"{self.title}: {key} must be None, True or False")
        if hp.get("foreach") and hp.get("fused"):
            raise RuntimeError(f"{self.title}: `fused` and `foreach` cannot be `True` together.")
        if hp.get("nesterov") and (_scalar(hp["momentum"]) <= 0 or _scalar(hp["dampening"]) != 0):
            raise ValueError(
                f"{self.title}: nesterov=True requires momentum > 0 and dampening = 0, "
                f"got momentum={hp['momentum']!r}, dampening={hp['dampening']!r}"
            )

    def with_defaults(self, **hp: Any) -> dict[str, Any]:
        """``defaults`` updated with ``hp``, validated; unknown names raise ``TypeError``."""
        unknown = sorted(set(hp) - set(self.defaults))
        if unknown:
            raise TypeError(
                f"{self.title}: unknown hyperparameter {unknown[0]!r}; "
                f"valid: {', '.join(self.defaults)}"
            )
        merged = {**self.defaults, **hp}
        self.validate(merged)
        return merged

    def rule(self, hp: Mapping[str, Any]) -> Rule:
        """The rule for a parameter group with hyperparameters ``hp`` (cached)."""
        factory, kwargs = self.structure(hp)
        return _cached_rule(factory, tuple(sorted(kwargs.items())))

    def scalars(self, hp: Mapping[str, Any]) -> dict[str, float]:
        """The numeric hyperparameters as floats, ``betas`` split into beta1/beta2."""
        flat = _flat(hp)
        return {k: _scalar(flat[k]) for k in self.numeric}


@cache
def _cached_rule(factory: Callable[..., Rule], kwargs: tuple[tuple[str, Any], ...]) -> Rule:
    return factory(**dict(kwargs))


def _flat(hp: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in hp.items() if k != "betas"}
    if "betas" in hp:
        betas = hp["betas"]
        if not isinstance(betas, tuple | list) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        out["beta1"], out["beta2"] = betas
    return out


def _l2(hp: Mapping[str, Any]) -> str | None:
    return "l2" if _scalar(hp["weight_decay"]) != 0 else None


def _sgd(hp: Mapping[str, Any]):
    return rules.sgd, {
        "momentum": _scalar(hp["momentum"]) != 0,
        "nesterov": hp["nesterov"],
        "weight_decay": _l2(hp),
        "maximize": hp["maximize"],
    }


def _momentum(hp: Mapping[str, Any]):
    return rules.ema_momentum, {"weight_decay": _l2(hp), "maximize": hp["maximize"]}


def _rmsprop(hp: Mapping[str, Any]):
    return rules.rmsprop, {
        "centered": hp["centered"],
        "momentum": _scalar(hp["momentum"]) > 0,
        "weight_decay": _l2(hp),
        "maximize": hp["maximize"],
    }


def _adam(hp: Mapping[str, Any]):
    if _scalar(hp["weight_decay"]) == 0:
        decay = None
    else:
        decay = "decoupled" if hp["decoupled_weight_decay"] else "l2"
    return rules.adam, {
        "amsgrad": hp["amsgrad"],
        "bias_correction": hp["bias_correction"],
        "weight_decay": decay,
        "maximize": hp["maximize"],
    }


_TORCH_TAIL = {"foreach": None, "differentiable": False, "fused": None}
_ADAM_DEFAULTS = {
    "lr": 1e-3,
    "betas": (0.9, 0.999),
    "eps": 1e-8,
    "weight_decay": 0,
    "amsgrad": False,
    "maximize": False,
    "foreach": None,
    "capturable": False,
    "differentiable": False,
    "fused": None,
    "decoupled_weight_decay": False,
    "bias_correction": True,
}
_ADAM_NUMERIC = ("lr", "beta1", "beta2", "eps", "weight_decay")

REGISTRY: dict[str, OptimizerInfo] = {
    info.name: info
    for info in (
        OptimizerInfo(
            name="sgd",
            title="SGD",
            summary="gradient descent; heavy-ball or Nesterov momentum (torch's form)",
            defaults={
                "lr": 1e-3,
                "momentum": 0,
                "dampening": 0,
                "weight_decay": 0,
                "nesterov": False,
                "maximize": False,
                **_TORCH_TAIL,
            },
            structure=_sgd,
            torch_twin="torch.optim.SGD",
            numeric=("lr", "momentum", "dampening", "weight_decay"),
        ),
        OptimizerInfo(
            name="momentum",
            title="Momentum",
            summary="SGD with momentum as an EMA of gradients (the seed's form, v0 = 0)",
            defaults={"lr": 1e-3, "momentum": 0.9, "weight_decay": 0, "maximize": False},
            structure=_momentum,
            torch_twin=None,
            numeric=("lr", "momentum", "weight_decay"),
        ),
        OptimizerInfo(
            name="rmsprop",
            title="RMSprop",
            summary="per-weight step divided by the RMS of recent gradients",
            defaults={
                "lr": 1e-2,
                "momentum": 0,
                "alpha": 0.99,
                "eps": 1e-8,
                "centered": False,
                "weight_decay": 0,
                "capturable": False,
                "foreach": None,
                "maximize": False,
                "differentiable": False,
            },
            structure=_rmsprop,
            torch_twin="torch.optim.RMSprop",
            numeric=("lr", "momentum", "alpha", "eps", "weight_decay"),
        ),
        OptimizerInfo(
            name="adam",
            title="Adam",
            summary="momentum + RMSProp with bias correction; weight_decay is L2",
            defaults=_ADAM_DEFAULTS,
            structure=_adam,
            torch_twin="torch.optim.Adam",
            numeric=_ADAM_NUMERIC,
        ),
        OptimizerInfo(
            name="adamw",
            title="AdamW",
            summary="Adam with decoupled weight decay (default 1e-2)",
            defaults={**_ADAM_DEFAULTS, "weight_decay": 1e-2, "decoupled_weight_decay": True},
            structure=_adam,
            torch_twin="torch.optim.AdamW",
            numeric=_ADAM_NUMERIC,
        ),
    )
}


def list_optimizers() -> list[str]:
    """Registry keys of every optimizer, in a stable order."""
    return list(REGISTRY)


def get(name: str) -> OptimizerInfo:
    """Look up an optimizer by registry key; unknown names list the valid ones."""
    try:
        return REGISTRY[name.lower()]
    except KeyError:
        raise ValueError(
            f"unknown optimizer {name!r}; choose one of: {', '.join(REGISTRY)}"
        ) from None
