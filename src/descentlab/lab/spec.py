"""Parsing the lab's small languages: optimizer specs, workload specs, regimes, lr lists.

``name[:key=value[:key=value...]]`` names an optimizer or a workload with options, for
example ``sgd:momentum=0.9:nesterov=true`` or ``ravine:kappa=100:noise=0.5``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .. import optimizers
from .errors import LabError


def _value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if "," in text or "/" in text:  # betas=0.9/0.999
        return tuple(_value(t) for t in text.replace("/", ",").split(",") if t)
    try:
        return int(text) if text.lstrip("-").isdigit() else float(text)
    except ValueError:
        return text


def parse_named(text: str) -> tuple[str, dict[str, Any]]:
    """``"name:k=v:k=v"`` -> ``("name", {k: v})``."""
    name, *pairs = text.strip().split(":")
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise LabError(f"malformed option {pair!r} in {text!r}; expected key=value")
        options[key.strip()] = _value(value.strip())
    return name.strip(), options


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer from the registry with fixed hyperparameters (all but ``lr``)."""

    name: str
    hp: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        if not self.hp:
            return self.name
        return self.name + ":" + ":".join(f"{k}={_fmt(v)}" for k, v in self.hp)

    def kwargs(self) -> dict[str, Any]:
        return dict(self.hp)


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, tuple):
        return "/".join(_fmt(x) for x in v)
    return f"{v:g}" if isinstance(v, float) else str(v)


def parse_optimizer(text: str) -> OptimizerSpec:
    """Parse and validate ``"adam"``, ``"sgd:momentum=0.9"``..."""
    name, hp = parse_named(text)
    if name.lower() not in optimizers.REGISTRY:
        raise LabError(
            f"unknown optimizer {name!r}; choose one of: {', '.join(optimizers.REGISTRY)}"
        )
    info = optimizers.REGISTRY[name.lower()]
    if "lr" in hp:
        raise LabError(f"give learning rates with --lr, not inside {text!r}")
    for key, value in hp.items():
        default = info.defaults.get(key)
        if isinstance(default, tuple) and not (
            isinstance(value, tuple)
            and len(value) == len(default)
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        ):
            form = "/".join(_fmt(v) for v in default)
            raise LabError(
                f"malformed {key} value in {text!r}; expected {key}={form} "
                f"({len(default)} numbers separated by /)"
            )
    try:
        info.with_defaults(**hp)
    except (TypeError, ValueError) as exc:
        raise LabError(str(exc)) from None
    return OptimizerSpec(info.name, tuple(sorted(hp.items())))


def parse_optimizers(text: str) -> list[OptimizerSpec]:
    specs = [parse_optimizer(t) for t in text.split(",") if t.strip()]
    if not specs:
        raise LabError("no optimizer given; e.g. --optimizers adam,sgd:momentum=0.9")
    return specs


def parse_lrs(text: str) -> list[float]:
    """``"1e-3,1e-2"`` -> ``[0.001, 0.01]``; every value finite and > 0."""
    if not text.strip():
        raise LabError("no learning rate given; e.g. --lr 1e-3,1e-2")
    out = []
    for item in text.split(","):
        item = item.strip()
        try:
            lr = float(item)
        except ValueError:
            raise LabError(
                f"malformed learning rate {item!r} in {text!r}; expected numbers like 1e-3,1e-2"
            ) from None
        if not math.isfinite(lr) or lr <= 0:
            raise LabError(f"learning rate must be a finite number > 0, got {item!r}")
        out.append(lr)
    return out


@dataclass(frozen=True)
class Regime:
    """How the gradient is estimated: the full set, one sample, or a mini-batch of B."""

    kind: str  # "full", "sgd" or "minibatch"
    batch: int | None = None

    @property
    def label(self) -> str:
        return f"minibatch:{self.batch}" if self.kind == "minibatch" else self.kind

    def batch_size(self, n: int | None) -> int | None:
        """Samples per step for a training set of ``n`` (None: no data, or the full set)."""
        if n is None or self.kind == "full":
            return None
        return 1 if self.kind == "sgd" else min(int(self.batch or 1), n)


def parse_regime(text: str) -> Regime:
    """``full`` (batch GD), ``sgd`` (one sample) or ``minibatch:B``."""
    t = text.strip().lower()
    if t in ("full", "batch"):
        return Regime("full")
    if t in ("sgd", "single", "minibatch:1"):
        return Regime("sgd")
    if t.startswith("minibatch:"):
        size = t.split(":", 1)[1]
        if size.isdigit() and int(size) > 0:
            return Regime("minibatch", int(size))
    raise LabError(
        f"bad regime {text!r}; choose full, sgd or minibatch:B with B a positive integer"
    )
