"""The one table of cases every optimizer test runs over.

Each case is a registry optimizer with hyperparameters, and (where torch.optim has the same
convention) a *twin*: how to build the torch.optim optimizer that must take the same steps,
and how its state maps onto ours.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

import descentlab.torch as dt

ALL_CLASSES = tuple(dt.BY_NAME.values())


@dataclass(frozen=True)
class Case:
    id: str
    name: str  # registry key
    hp: dict[str, Any] = field(default_factory=dict)
    # torch.optim twin: params -> optimizer; None when no torch class has this convention
    twin: Callable[[Any], torch.optim.Optimizer] | None = None
    # our state = state_scale * twin's state (the EMA-momentum buffer is (1 - beta) x torch's)
    state_scale: float = 1.0

    @property
    def cls(self) -> type[dt.RuleOptimizer]:
        return {c.info.name: c for c in ALL_CLASSES}[self.name]

    def make(self, params: Any) -> dt.RuleOptimizer:
        return self.cls(params, **self.hp)


def _twin(cls: type[torch.optim.Optimizer], **hp: Any) -> Callable[[Any], torch.optim.Optimizer]:
    return lambda params: cls(params, **hp)


def _same(name: str, cls: type[torch.optim.Optimizer], id: str, **hp: Any) -> Case:
    return Case(id, name, hp, _twin(cls, **hp))


T = torch.optim
CASES: list[Case] = [
    _same("sgd", T.SGD, "sgd", lr=0.05),
    _same("sgd", T.SGD, "sgd-momentum", lr=0.05, momentum=0.9),
    _same("sgd", T.SGD, "sgd-dampening", lr=0.05, momentum=0.9, dampening=0.5),
    _same("sgd", T.SGD, "sgd-nesterov", lr=0.05, momentum=0.9, nesterov=True),
    _same("sgd", T.SGD, "sgd-l2-maximize", lr=0.05, momentum=0.5, weight_decay=0.1, maximize=True),
    Case(
        "momentum-ema",
        "momentum",
        {"lr": 0.1, "momentum": 0.9},
        _twin(T.SGD, lr=0.1 * (1 - 0.9), momentum=0.9),
        state_scale=1 - 0.9,
    ),
    Case(
        "momentum-ema-l2",
        "momentum",
        {"lr": 0.1, "momentum": 0.8, "weight_decay": 0.05},
        _twin(T.SGD, lr=0.1 * (1 - 0.8), momentum=0.8, weight_decay=0.05),
        state_scale=1 - 0.8,
    ),
    _same("rmsprop", T.RMSprop, "rmsprop", lr=1e-2),
    _same("rmsprop", T.RMSprop, "rmsprop-alpha", lr=1e-2, alpha=0.9, eps=1e-6),
    _same("rmsprop", T.RMSprop, "rmsprop-centered", lr=1e-2, centered=True),
    _same("rmsprop", T.RMSprop, "rmsprop-momentum", lr=1e-2, momentum=0.9),
    _same(
        "rmsprop",
        T.RMSprop,
        "rmsprop-all",
        lr=1e-2,
        centered=True,
        momentum=0.5,
        weight_decay=0.1,
        maximize=True,
    ),
    _same("adam", T.Adam, "adam", lr=1e-2),
    _same("adam", T.Adam, "adam-betas", lr=1e-2, betas=(0.5, 0.9), eps=1e-6),
    _same("adam", T.Adam, "adam-amsgrad", lr=1e-2, amsgrad=True),
    _same("adam", T.Adam, "adam-l2", lr=1e-2, weight_decay=0.1),
    _same("adam", T.Adam, "adam-decoupled", lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True),
    _same("adam", T.Adam, "adam-maximize", lr=1e-2, maximize=True),
    Case("adam-no-bias-correction", "adam", {"lr": 1e-2, "bias_correction": False}),
    _same("adamw", T.AdamW, "adamw", lr=1e-2),
    _same("adamw", T.AdamW, "adamw-amsgrad", lr=1e-2, weight_decay=0.1, amsgrad=True),
    _same("adamw", T.AdamW, "adamw-maximize", lr=1e-2, weight_decay=0.05, maximize=True),
    _same("adagrad", T.Adagrad, "adagrad", lr=5e-2),
    _same(
        "adagrad",
        T.Adagrad,
        "adagrad-all",
        lr=5e-2,
        lr_decay=0.01,
        weight_decay=0.1,
        initial_accumulator_value=0.5,
        maximize=True,
    ),
    _same("adadelta", T.Adadelta, "adadelta"),
    _same(
        "adadelta",
        T.Adadelta,
        "adadelta-all",
        lr=0.5,
        rho=0.8,
        eps=1e-4,
        weight_decay=0.1,
        maximize=True,
    ),
    _same("adamax", T.Adamax, "adamax", lr=1e-2),
    _same(
        "adamax",
        T.Adamax,
        "adamax-all",
        lr=1e-2,
        betas=(0.5, 0.9),
        eps=1e-6,
        weight_decay=0.1,
        maximize=True,
    ),
    _same("radam", T.RAdam, "radam", lr=1e-2),
    _same("radam", T.RAdam, "radam-l2-maximize", lr=1e-2, weight_decay=0.1, maximize=True),
    _same(
        "radam",
        T.RAdam,
        "radam-decoupled",
        lr=1e-2,
        betas=(0.8, 0.9),
        weight_decay=0.1,
        decoupled_weight_decay=True,
    ),
    _same("nadam", T.NAdam, "nadam", lr=1e-2),
    _same(
        "nadam",
        T.NAdam,
        "nadam-l2-maximize",
        lr=1e-2,
        weight_decay=0.1,
        momentum_decay=6e-3,
        maximize=True,
    ),
    _same(
        "nadam",
        T.NAdam,
        "nadam-decoupled",
        lr=1e-2,
        betas=(0.8, 0.9),
        weight_decay=0.1,
        decoupled_weight_decay=True,
    ),
    _same("asgd", T.ASGD, "asgd", lr=0.05),
    _same("asgd", T.ASGD, "asgd-averaging-l2", lr=0.05, lambd=0.01, t0=5, weight_decay=0.1),
    _same("asgd", T.ASGD, "asgd-maximize", lr=0.05, alpha=0.5, maximize=True),
    _same("rprop", T.Rprop, "rprop", lr=1e-2),
    _same("rprop", T.Rprop, "rprop-etas-maximize", lr=1e-2, etas=(0.3, 1.5), maximize=True),
    _same("adafactor", T.Adafactor, "adafactor", lr=1e-2),
    _same(
        "adafactor",
        T.Adafactor,
        "adafactor-decay-maximize",
        lr=1e-2,
        beta2_decay=-0.6,
        eps=(1e-20, 1e-3),
        d=1.5,
        weight_decay=0.1,
        maximize=True,
    ),
]

TWINNED = [c for c in CASES if c.twin is not None]


def ids(cases: list[Case]) -> list[str]:
    return [c.id for c in cases]
