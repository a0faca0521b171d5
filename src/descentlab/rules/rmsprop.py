"""RMSProp: divide each step by a running root-mean-square of that weight's gradients."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .base import Array, Coefficients, Rule, Transform, ema, mean_of_squares, sqrt
from .common import WeightDecay, chain
from .momentum import HeavyBall


@dataclass(frozen=True)
class ScaleByRms(Transform):
    """``u = g / (sqrt(s) + eps)`` with ``s`` the EMA of ``g**2`` (decay ``alpha``).

    ``centered`` subtracts the square of the EMA of ``g``: the denominator is then a
    running standard deviation instead of a running RMS.
    """

    centered: bool = False

    @property
    def slots(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("square_avg", "grad_avg") if self.centered else ("square_avg",)

    def coefficients(self, hp: Mapping[str, float], step: int) -> dict[str, float]:
        return {"alpha": hp["alpha"], "rate": 1.0 - hp["alpha"], "eps": hp["eps"]}

    def __call__(self, u: Array, p: Array, state: Mapping[str, Array], c: Coefficients):
        s = mean_of_squares(state["square_avg"], u, c["alpha"], c["rate"])
        if self.centered:
            mean = ema(state["grad_avg"], u, c["rate"])
            denom = sqrt(s - mean * mean) + c["eps"]
            return u / denom, {"square_avg": s, "grad_avg": mean}
        return u / (sqrt(s) + c["eps"]), {"square_avg": s}


def rmsprop(
    *,
    centered: bool = False,
    momentum: bool = False,
    weight_decay: WeightDecay = None,
    maximize: bool = False,
) -> Rule:
    """RMSProp (Tieleman & Hinton, 2012), with torch's ``centered`` and ``momentum`` options.

    ::

        s_t = alpha * s_{t-1} + (1 - alpha) * g_t**2
        d_t = g_t / (sqrt(s_t) + eps)            (centered: sqrt(s_t - gbar_t**2) + eps)
        b_t = momentum * b_{t-1} + d_t           (if momentum; b_0 = 0)
        w_t = w_{t-1} - lr * (b_t or d_t)

    **Conventions**: eps outside the square root (torch, the seed); Keras and optax put it
    inside (``sqrt(s + eps)``). State starts at zero with no bias correction. Equals
    ``torch.optim.RMSprop`` to float64 round-off.

    Hyperparameters read each step: ``lr``, ``alpha``, ``eps``, ``momentum``,
    ``weight_decay``.

    Example (the first step of RMSProp is ``lr * g / (sqrt(1 - alpha) * |g| + eps)``):
        >>> import numpy as np
        >>> rule = rmsprop()
        >>> w, _ = rule.step(np.array([0.0]), np.array([4.0]), rule.init(np.zeros(1)),
        ...                  step=1, lr=0.01, alpha=0.99, eps=0.0)
        >>> round(float(w[0]), 12)
        -0.1
    """
    core: tuple = (ScaleByRms(centered=centered),)
    if momentum:
        # dampening 0 and a zero-initialised buffer: torch's RMSprop momentum exactly.
        core += (HeavyBall(),)
    return chain("rmsprop", core, weight_decay=weight_decay, maximize=maximize)
