"""Adagrad and Adadelta: per-weight steps scaled by the history of that weight's gradients."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .base import Array, Coefficients, Rule, Transform, mean_of_squares, sqrt
from .common import WeightDecay, chain


@dataclass(frozen=True)
class ScaleByAdagrad(Transform):
    """``u = g / (sqrt(s) + eps)`` with ``s`` the running SUM of ``g**2`` (no decay).

    ``s`` starts at ``initial_accumulator_value``, not at zero.
    """

    slots = ("sum",)

    def initial(self, hp: Mapping[str, float]) -> dict[str, float]:
        return {"sum": hp["initial_accumulator_value"]}

    def coefficients(self, hp: Mapping[str, float], step: int) -> dict[str, float]:
        return {"eps": hp["eps"]}

    def __call__(self, u: Array, p: Array, state: Mapping[str, Array], c: Coefficients):
        s = state["sum"] + u * u
        return u / (sqrt(s) + c["eps"]), {"sum": s}


@dataclass(frozen=True)
class ScaleByDecayedLR(Transform):
    """The step of Adagrad: ``u = -lr_t * u`` with ``lr_t = lr / (1 + (t - 1) * lr_decay)``."""

    def coefficients(self, hp: Mapping[str, float], step: int) -> dict[str, float]:
        return {"clr": hp["lr"] / (1 + (step - 1) * hp["lr_decay"])}

    def __call__(self, u: Array, p: Array, state: Mapping[str, Array], c: Coefficients):
        return -c["clr"] * u, {}


@dataclass(frozen=True)
class ScaleByAdadelta(Transform):
    """``u = sqrt(d + eps) / sqrt(v + eps) * g``: the step's units come from past steps.

    ``v`` averages ``g**2`` and ``d`` averages the squared outgoing steps, both with decay
    ``rho``; ``d`` is updated after the step, with the new step.
    """

    slots = ("square_avg", "acc_delta")

    def coefficients(self, hp: Mapping[str, float], step: int) -> dict[str, float]:
        return {"rho": hp["rho"], "rate_rho": 1.0 - hp["rho"], "eps": hp["eps"]}

    def __call__(self, u: Array, p: Array, state: Mapping[str, Array], c: Coefficients):
        v = mean_of_squares(state["square_avg"], u, c["rho"], c["rate_rho"])
        delta = sqrt(state["acc_delta"] + c["eps"]) / sqrt(v + c["eps"]) * u
        d = mean_of_squares(state["acc_delta"], delta, c["rho"], c["rate_rho"])
        return delta, {"square_avg": v, "acc_delta": d}


def adagrad(*, weight_decay: WeightDecay = None, maximize: bool = False) -> Rule:
    """Adagrad (Duchi, Hazan & Singer, 2011), with torch's ``lr_decay``.

    ::

        g_t = grad + weight_decay * w_{t-1}                       (L2)
        s_t = s_{t-1} + g_t**2;   s_0 = initial_accumulator_value
        lr_t = lr / (1 + (t - 1) * lr_decay)
        w_t = w_{t-1} - lr_t * g_t / (sqrt(s_t) + eps)

    **Conventions**: eps outside the square root and the accumulator starting at
    ``initial_accumulator_value`` (torch; optax's ``adagrad`` starts it at 0.1 and Keras at
    0.1 too, with eps inside). Equals ``torch.optim.Adagrad`` to float64 round-off.

    Hyperparameters read each step: ``lr``, ``lr_decay``, ``eps``, ``weight_decay``; read
    when the state is created: ``initial_accumulator_value``.

    Example (first step from a zero accumulator: ``lr * g / |g|``, the sign of ``g``):
        >>> import numpy as np
        >>> rule = adagrad()
        >>> hp = dict(lr=0.1, lr_decay=0.0, eps=0.0, initial_accumulator_value=0.0)
        >>> w, s = rule.step(np.zeros(2), np.array([3.0, -0.5]), rule.init(np.zeros(2), hp),
        ...                  step=1, **hp)
        >>> w.tolist(), s["sum"].tolist()
        ([-0.1, 0.1], [9.0, 0.25])
    """
    return chain(
        "adagrad",
        (ScaleByAdagrad(),),
        weight_decay=weight_decay,
        maximize=maximize,
        step=ScaleByDecayedLR(),
    )


def adadelta(*, weight_decay: WeightDecay = None, maximize: bool = False) -> Rule:
    """Adadelta (Zeiler, 2012), with torch's ``lr`` multiplier (1.0 is the paper's rule).

    ::

        g_t = grad + weight_decay * w_{t-1}                       (L2)
        v_t = rho * v_{t-1} + (1 - rho) * g_t**2
        x_t = sqrt(d_{t-1} + eps) / sqrt(v_t + eps) * g_t
        d_t = rho * d_{t-1} + (1 - rho) * x_t**2
        w_t = w_{t-1} - lr * x_t

    **Conventions**: eps inside both square roots (the paper, torch, Keras); both averages
    start at zero with no bias correction. Equals ``torch.optim.Adadelta`` to float64
    round-off.

    Hyperparameters read each step: ``lr``, ``rho``, ``eps``, ``weight_decay``.

    Example (first step: ``x = sqrt(eps) / sqrt((1 - rho) * g**2 + eps) * g``):
        >>> import numpy as np
        >>> rule = adadelta()
        >>> w, _ = rule.step(np.zeros(1), np.array([2.0]), rule.init(np.zeros(1)), step=1,
        ...                  lr=1.0, rho=0.75, eps=1.0)
        >>> round(float(w[0]), 12)  # -sqrt(1) / sqrt(0.25 * 4 + 1) * 2 = -sqrt(2)
        -1.414213562373
    """
    return chain("adadelta", (ScaleByAdadelta(),), weight_decay=weight_decay, maximize=maximize)
