"""The registry: every optimizer descentlab offers, its defaults, its checks, its rule.

One :class:`OptimizerInfo` per optimizer is shared by every driver (PyTorch, NumPy, the
lab), so a default or a validity range is written in exactly one place. Defaults are
torch.optim's, so swapping ``torch.optim.Adam`` for ``descentlab.torch.Adam`` changes
nothing but the import.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from numbers import Real
from typing import Any, SupportsFloat

from . import rules
from .rules.base import Rule

# One glossary of hyperparameters: name -> (is it valid?, the valid range in words). The
# ranges are torch.optim's (a drop-in accepts what torch accepts), except that non-finite
# values are refused everywhere; an optimizer without a torch twin may narrow them
# (``OptimizerInfo.ranges``).
_RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "lr": (lambda x: x >= 0, "lr >= 0"),
    "momentum": (lambda x: x >= 0, "momentum >= 0"),
    "dampening": (lambda x: True, "any finite number"),
    "weight_decay": (lambda x: x >= 0, "weight_decay >= 0"),
    "eps": (lambda x: x >= 0, "eps >= 0"),
    "alpha": (lambda x: x >= 0, "alpha >= 0"),
    "beta1": (lambda x: 0 <= x < 1, "0 <= betas[0] < 1"),
    "beta2": (lambda x: 0 <= x < 1, "0 <= betas[1] < 1"),
    "lr_decay": (lambda x: x >= 0, "lr_decay >= 0"),
    "initial_accumulator_value": (lambda x: x >= 0, "initial_accumulator_value >= 0"),
    "rho": (lambda x: 0 <= x <= 1, "0 <= rho <= 1"),
    "momentum_decay": (lambda x: x >= 0, "momentum_decay >= 0"),
    "lambd": (lambda x: True, "any finite number"),
    "t0": (lambda x: True, "any finite number"),
    "etaminus": (lambda x: 0 < x < 1, "0 < etas[0] < 1"),
    "etaplus": (lambda x: x > 1, "etas[1] > 1"),
    "step_size_min": (lambda x: x >= 0, "step_sizes[0] >= 0"),
    "step_size_max": (lambda x: x >= 0, "step_sizes[1] >= 0"),
    "beta2_decay": (lambda x: x <= 0, "beta2_decay <= 0"),
    "eps1": (lambda x: x >= 0, "eps[0] >= 0 or None"),
    "eps2": (lambda x: x >= 0, "eps[1] >= 0"),
    "d": (lambda x: x >= 1, "d >= 1"),
}
# Hyperparameters that may be None (Adafactor's eps[0]: the dtype's machine epsilon).
_NULLABLE = frozenset({"eps1"})
# Tuple arguments and the names of their parts: one name per number in the glossary.
_PAIRS = {
    "betas": ("beta1", "beta2"),
    "etas": ("etaminus", "etaplus"),
    "step_sizes": ("step_size_min", "step_size_max"),
}
# How torch words "invalid <name>" (kept, so code matching torch's messages still matches).
_LABELS = {
    "lr": "learning rate",
    "eps": "epsilon value",
    "beta1": "beta parameter at index 0",
    "beta2": "beta parameter at index 1",
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
# Keys any optimizer may have (or torch added late): they do not tell optimizers apart.
_GENERIC = frozenset(
    {"lr", "weight_decay", "maximize", "foreach", "fused", "differentiable", "capturable"}
    | {"decoupled_weight_decay", "bias_correction"}
)
_UNSUPPORTED = {
    "differentiable": "differentiating through the optimizer step",
    "capturable": "CUDA-graph capture of the step",
}


def _scalar(value: Any) -> float:
    """A hyperparameter as a float (torch allows 1-element tensors for lr and betas)."""
    if type(value) is float:  # read every step: a Protocol isinstance costs microseconds
        return value
    if isinstance(value, str | bytes) or not isinstance(value, Real | SupportsFloat):
        raise TypeError(f"expected a number, got {value!r}")
    if hasattr(value, "numel") and value.numel() != 1:
        raise ValueError(f"must be 1-element, got {value.numel()} elements")
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
        ranges: valid ranges that differ from the glossary's (narrower for an optimizer
            without a torch twin; ASGD's ``alpha``, which torch never checks, is any number).
        stores_step: whether the state keeps a ``step`` count. torch.optim.SGD keeps none
            (its rule only needs to know whether a momentum buffer exists yet); the
            drop-ins keep exactly torch's state keys.
        sparse_grads: whether sparse gradients are accepted (torch.optim.SGD accepts them;
            the rule's arithmetic then adds a sparse gradient into dense tensors).
        starts_from_constructor: whether the state's starting values (``Transform.initial``)
            are read from the constructor's arguments (torch.optim.Adagrad's
            ``initial_accumulator_value``) rather than from the parameter's group (the first
            step size of Rprop, ASGD's first ``eta``: the group's ``lr``).
        wording: torch's own message for an invalid value, where it does not say "Invalid
            <name>: <value>" (Adafactor, Muon), formatted with ``value``.
    """

    name: str
    title: str
    summary: str
    defaults: Mapping[str, Any]
    structure: Callable[[Mapping[str, Any]], tuple[Callable[..., Rule], dict[str, Any]]]
    torch_twin: str | None = None
    numeric: tuple[str, ...] = field(default=())
    ranges: Mapping[str, tuple[Callable[[float], bool], str]] = field(default_factory=dict)
    stores_step: bool = True
    sparse_grads: bool = False
    starts_from_constructor: bool = False
    wording: Mapping[str, str] = field(default_factory=dict)

    def validate(self, hp: Mapping[str, Any]) -> None:
        """Raise ``ValueError``/``TypeError`` naming the first invalid hyperparameter.

        The error types are torch.optim's, and so is the wording of "Invalid ...: value".
        """
        _check_betas(self.title, hp)
        for key, value in _flat(hp).items():
            if key in _NULLABLE and value is None:
                continue
            if key in _RANGES:
                name = _ARGUMENT.get(key, key)
                try:
                    x = _scalar(value)
                except ValueError as exc:  # torch: "Tensor lr must be 1-element"
                    raise ValueError(f"{self.title}: Tensor {name} {exc}") from None
                except TypeError:
                    raise TypeError(
                        f"{self.title}: {name} must be a number, got {value!r}"
                    ) from None
                ok, valid = self.ranges.get(key, _RANGES[key])
                if not math.isfinite(x) or not ok(x):
                    if key in self.wording:
                        what = self.wording[key].format(value=value)
                    else:
                        what = f"Invalid {_LABELS.get(key, f'{key} value')}: {value}"
                    raise ValueError(f"{self.title}: {what} (valid: {valid})")
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
        etas = hp.get("etas")
        if isinstance(etas, tuple | list) and len(etas) == 2 and not 0 < etas[0] < 1 < etas[1]:
            raise ValueError(  # torch's words, before the glossary's per-number check
                f"{self.title}: Invalid eta values: {etas[0]}, {etas[1]} "
                "(valid: 0 < etas[0] < 1 < etas[1])"
            )
        if "adjust_lr_fn" in hp and hp["adjust_lr_fn"] not in (None, "original", "match_rms_adamw"):
            raise ValueError(
                f"{self.title}: Adjust learning rate function {hp['adjust_lr_fn']} is not "
                "supported (valid: None, 'original', 'match_rms_adamw')"
            )
        if "ns_steps" in hp and (
            isinstance(hp["ns_steps"], bool)
            or not isinstance(hp["ns_steps"], int)
            or not 0 <= hp["ns_steps"] < 100
        ):
            raise ValueError(
                f"{self.title}: ns_steps must be an integer, 0 <= ns_steps < 100, "
                f"got {hp['ns_steps']!r}"
            )
        if "ns_coefficients" in hp:
            coefficients = hp["ns_coefficients"]
            if not isinstance(coefficients, tuple | list) or len(coefficients) != 3:
                raise ValueError(
                    f"{self.title}: ns_coefficients must be 3 numbers (a, b, c), "
                    f"got {coefficients!r}"
                )
            for x in coefficients:
                if not math.isfinite(_scalar(x)):
                    raise ValueError(f"{self.title}: ns_coefficients must be finite")
        if (
            hp.get("nesterov")
            and "dampening" in hp
            and (_scalar(hp["momentum"]) <= 0 or _scalar(hp["dampening"]) != 0)
        ):
            raise ValueError(
                f"{self.title}: Nesterov momentum requires a momentum and zero dampening "
                f"(nesterov=True needs momentum > 0 and dampening = 0, "
                f"got momentum={hp['momentum']!r}, dampening={hp['dampening']!r})"
            )

    @cached_property
    def signature(self) -> frozenset[str]:
        """The hyperparameters that say which optimizer a param group belongs to: every
        version of torch.optim writes them (``betas``, ``eps`` and ``amsgrad`` for Adam)."""
        return frozenset(self.defaults) - _GENERIC

    @cached_property
    def state_keys(self) -> frozenset[str]:
        """Every per-parameter state key this optimizer may keep, whatever its settings."""
        keys = {"step"}
        flags = [k for k in _FLAGS if k in self.defaults]
        for on in itertools.product((False, True), repeat=len(flags) + 2):
            hp = {**self.defaults, **dict(zip(flags, on, strict=False))}
            hp["momentum"], hp["weight_decay"] = (0.9 if on[-2] else 0), (0.1 if on[-1] else 0)
            try:
                rule = self.rule(hp)
                keys.update(rule.slots, rule.scalar_names)
            except (ValueError, KeyError):  # nesterov without momentum...
                continue
        return frozenset(keys)

    def check_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Refuse, with a ``ValueError``, a checkpoint saved by another optimizer.

        torch.optim takes one and fails at the first step (``KeyError: 'momentum'`` for an
        Adam checkpoint in SGD) or, where the keys happen to fit, runs on the other
        optimizer's hyperparameters and state.
        """
        for group in state_dict.get("param_groups", ()):
            missing = sorted(self.signature - set(group))
            foreign = sorted(
                {k for info in REGISTRY.values() for k in info.signature}
                & set(group) - set(self.defaults)
            )
            if missing or foreign:
                what = f"has {', '.join(foreign)}" if foreign else f"lacks {', '.join(missing)}"
                raise ValueError(
                    f"{self.title}: this state_dict was saved by another optimizer (a param "
                    f"group {what}; {self.title}'s have {', '.join(sorted(self.signature))}): "
                    "load it into the optimizer that saved it"
                )
        for saved in state_dict.get("state", {}).values():
            extra = sorted(set(saved) - self.state_keys)
            if extra:
                raise ValueError(
                    f"{self.title}: this state_dict holds state {', '.join(extra)}, which "
                    f"{self.title} never keeps (valid: {', '.join(sorted(self.state_keys))}): "
                    "it was saved by another optimizer"
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
        return {k: _scalar(flat[k]) for k in self.numeric if flat[k] is not None}

    def traced_scalars(self, hp: Mapping[str, Any]) -> dict[str, Any]:
        """:meth:`scalars` for a step traced by the user's ``torch.compile``: the numbers
        as they are (a float, or a tensor ``lr`` as a 0-dim tensor), never read to the host,
        so a tensor learning rate changed by a scheduler is an input of the graph."""
        import torch  # only ever called by the drop-ins, inside a trace

        flat = _flat(hp)
        return {
            k: flat[k].reshape(()) if isinstance(flat[k], torch.Tensor) else flat[k]
            for k in self.numeric
            if flat[k] is not None
        }


@cache
def _cached_rule(factory: Callable[..., Rule], kwargs: tuple[tuple[str, Any], ...]) -> Rule:
    return factory(**dict(kwargs))


def _flat(hp: Mapping[str, Any]) -> dict[str, Any]:
    """``hp`` with every tuple argument split into its named parts (``betas`` into
    ``beta1``/``beta2``; a pair ``eps``, Adafactor's, into ``eps1``/``eps2``)."""
    pairs = dict(_PAIRS)
    if isinstance(hp.get("eps"), (tuple, list)):  # (a tuple: dynamo 2.8 traces no X | Y)
        pairs["eps"] = ("eps1", "eps2")
    out = {k: v for k, v in hp.items() if k not in pairs}
    for key, names in pairs.items():
        if key not in hp:
            continue
        value = hp[key]
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise ValueError(f"{key} must be a pair ({', '.join(names)}), got {value!r}")
        out[names[0]], out[names[1]] = value
    return out


# The argument a flattened name came from, for messages.
_ARGUMENT = {
    part: f"{key}[{i}]"
    for key, names in {**_PAIRS, "eps": ("eps1", "eps2")}.items()
    for i, part in enumerate(names)
}


def _check_betas(title: str, hp: Mapping[str, Any]) -> None:
    betas = hp.get("betas")
    if isinstance(betas, tuple | list) and len(betas) == 2:
        tensors = [hasattr(b, "numel") for b in betas]
        if tensors[0] != tensors[1]:  # as torch.optim.Adam
            raise ValueError(f"{title}: betas must be either both floats or both Tensors")


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


def _decay(hp: Mapping[str, Any]) -> str | None:
    if _scalar(hp["weight_decay"]) == 0:
        return None
    return "decoupled" if hp["decoupled_weight_decay"] else "l2"


def _radam(hp: Mapping[str, Any]):
    return rules.radam, {"weight_decay": _decay(hp), "maximize": hp["maximize"]}


def _adam(hp: Mapping[str, Any]):
    decay = _decay(hp)
    return rules.adam, {
        "amsgrad": hp["amsgrad"],
        "bias_correction": hp.get("bias_correction", True),
        "weight_decay": decay,
        "maximize": hp["maximize"],
    }


def _adagrad(hp: Mapping[str, Any]):
    return rules.adagrad, {"weight_decay": _l2(hp), "maximize": hp["maximize"]}


def _adadelta(hp: Mapping[str, Any]):
    return rules.adadelta, {"weight_decay": _l2(hp), "maximize": hp["maximize"]}


def _adamax(hp: Mapping[str, Any]):
    return rules.adamax, {"weight_decay": _l2(hp), "maximize": hp["maximize"]}


def _nadam(hp: Mapping[str, Any]):
    return rules.nadam, {"weight_decay": _decay(hp), "maximize": hp["maximize"]}


def _asgd(hp: Mapping[str, Any]):
    return rules.asgd, {"weight_decay": _l2(hp), "maximize": hp["maximize"]}


def _rprop(hp: Mapping[str, Any]):
    return rules.rprop, {"maximize": hp["maximize"]}


def _adafactor(hp: Mapping[str, Any]):
    return rules.adafactor, {
        "weight_decay": _scalar(hp["weight_decay"]) != 0,
        "maximize": hp["maximize"],
    }


def _muon(hp: Mapping[str, Any]):
    return rules.muon, {
        "nesterov": hp["nesterov"],
        "ns_coefficients": tuple(_scalar(x) for x in hp["ns_coefficients"]),
        "ns_steps": hp["ns_steps"],
        "adjust_lr_fn": hp["adjust_lr_fn"],
        "weight_decay": _scalar(hp["weight_decay"]) != 0,
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
            stores_step=False,
            sparse_grads=True,
        ),
        OptimizerInfo(
            name="momentum",
            title="Momentum",
            summary="SGD with momentum as an EMA of gradients (the seed's form, v0 = 0)",
            defaults={"lr": 1e-3, "momentum": 0.9, "weight_decay": 0, "maximize": False},
            structure=_momentum,
            torch_twin=None,
            numeric=("lr", "momentum", "weight_decay"),
            ranges={"momentum": (lambda x: 0 <= x < 1, "0 <= momentum < 1")},
            stores_step=False,
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
        OptimizerInfo(
            name="adagrad",
            title="Adagrad",
            summary="per-weight step divided by the root of the SUM of past squared gradients",
            defaults={
                "lr": 1e-2,
                "lr_decay": 0,
                "eps": 1e-10,
                "weight_decay": 0,
                "initial_accumulator_value": 0,
                "foreach": None,
                "maximize": False,
                "differentiable": False,
                "fused": None,
            },
            structure=_adagrad,
            torch_twin="torch.optim.Adagrad",
            starts_from_constructor=True,
            numeric=("lr", "lr_decay", "eps", "weight_decay", "initial_accumulator_value"),
        ),
        OptimizerInfo(
            name="adadelta",
            title="Adadelta",
            summary="step = RMS of past steps / RMS of past gradients x gradient (units-free)",
            defaults={
                "lr": 1.0,
                "rho": 0.9,
                "eps": 1e-6,
                "weight_decay": 0,
                "maximize": False,
                "capturable": False,
                "foreach": None,
                "differentiable": False,
            },
            structure=_adadelta,
            torch_twin="torch.optim.Adadelta",
            numeric=("lr", "rho", "eps", "weight_decay"),
        ),
        OptimizerInfo(
            name="adamax",
            title="Adamax",
            summary="Adam with an infinity norm: divide by a decaying max of |g|",
            defaults={
                "lr": 2e-3,
                "betas": (0.9, 0.999),
                "eps": 1e-8,
                "weight_decay": 0,
                "foreach": None,
                "maximize": False,
                "differentiable": False,
                "capturable": False,
            },
            structure=_adamax,
            torch_twin="torch.optim.Adamax",
            numeric=("lr", "beta1", "beta2", "eps", "weight_decay"),
        ),
        OptimizerInfo(
            name="radam",
            title="RAdam",
            summary="Adam whose adaptive step is rectified (momentum SGD for the first steps)",
            defaults={
                "lr": 1e-3,
                "betas": (0.9, 0.999),
                "eps": 1e-8,
                "weight_decay": 0,
                "maximize": False,
                "foreach": None,
                "capturable": False,
                "decoupled_weight_decay": False,
                "differentiable": False,
            },
            structure=_radam,
            torch_twin="torch.optim.RAdam",
            numeric=("lr", "beta1", "beta2", "eps", "weight_decay"),
        ),
        OptimizerInfo(
            name="nadam",
            title="NAdam",
            summary="Adam with Nesterov momentum on a warming-up momentum schedule",
            defaults={
                "lr": 2e-3,
                "betas": (0.9, 0.999),
                "eps": 1e-8,
                "weight_decay": 0,
                "momentum_decay": 4e-3,
                "decoupled_weight_decay": False,
                "maximize": False,
                "foreach": None,
                "capturable": False,
                "differentiable": False,
            },
            structure=_nadam,
            torch_twin="torch.optim.NAdam",
            numeric=("lr", "beta1", "beta2", "eps", "weight_decay", "momentum_decay"),
        ),
        OptimizerInfo(
            name="asgd",
            title="ASGD",
            summary="SGD with a decaying step and an average of the iterates (ax)",
            defaults={
                "lr": 1e-2,
                "lambd": 1e-4,
                "alpha": 0.75,
                "t0": 1e6,
                "weight_decay": 0,
                "foreach": None,
                "maximize": False,
                "differentiable": False,
                "capturable": False,
            },
            structure=_asgd,
            torch_twin="torch.optim.ASGD",
            numeric=("lr", "lambd", "alpha", "t0", "weight_decay"),
            ranges={"alpha": (lambda x: True, "any finite number")},
        ),
        OptimizerInfo(
            name="rprop",
            title="Rprop",
            summary="per-weight step sizes grown or shrunk by the gradient's sign agreement",
            defaults={
                "lr": 1e-2,
                "etas": (0.5, 1.2),
                "step_sizes": (1e-6, 50),
                "foreach": None,
                "maximize": False,
                "differentiable": False,
                "capturable": False,
            },
            structure=_rprop,
            torch_twin="torch.optim.Rprop",
            numeric=("lr", "etaminus", "etaplus", "step_size_min", "step_size_max"),
        ),
        OptimizerInfo(
            name="adafactor",
            title="Adafactor",
            summary="factored second moments (rows x columns) and a relative step size",
            defaults={
                "lr": 1e-2,
                "beta2_decay": -0.8,
                "eps": (None, 1e-3),
                "d": 1.0,
                "weight_decay": 0.0,
                "foreach": None,
                "maximize": False,
            },
            structure=_adafactor,
            torch_twin="torch.optim.Adafactor",
            numeric=("lr", "beta2_decay", "eps1", "eps2", "d", "weight_decay"),
            wording={
                "lr": "Learning rate should be >= 0 but is: {value}",
                "beta2_decay": "beta2_decay should be <= 0 but is: {value}",
                "eps1": "epsilon1 should be >= 0 but is: {value}",
                "eps2": "epsilon2 should be >= 0 but is: {value}",
                "d": "Clipping threshold d should be >= 1 but is: {value}",
                "weight_decay": "weight_decay should be >= 0 but is: {value}",
            },
        ),
        OptimizerInfo(
            name="muon",
            title="Muon",
            summary="momentum orthogonalized by Newton-Schulz iterations (2-D parameters)",
            defaults={
                "lr": 1e-3,
                "weight_decay": 0.1,
                "momentum": 0.95,
                "nesterov": True,
                "ns_coefficients": (3.4445, -4.775, 2.0315),
                "eps": 1e-7,
                "ns_steps": 5,
                "adjust_lr_fn": None,
            },
            structure=_muon,
            torch_twin="torch.optim.Muon",
            numeric=("lr", "weight_decay", "momentum", "eps"),
            stores_step=False,
            wording={
                "lr": "Learning rate should be >= 0 but is: {value}",
                "momentum": "momentum should be >= 0 but is: {value}",
                "weight_decay": "weight decay should be >= 0 but is: {value}",
            },
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
