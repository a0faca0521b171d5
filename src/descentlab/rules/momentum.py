"""Plain gradient steps and the two forms of momentum."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .base import Array, Coefficients, Rule, Transform, choose, ema
from .common import WeightDecay, chain


@dataclass(frozen=True)
class HeavyBall(Transform):
    """Heavy-ball momentum as torch.optim writes it (lr outside the buffer).

    At step 1 the buffer is set to the gradient itself (no dampening); afterwards
    ``b = momentum * b + (1 - dampening) * u``. Nesterov then steps along
    ``u + momentum * b`` instead of ``b``. The first-step case is folded into the
    coefficients, so the array math has no branch.
    """

    nesterov: bool = False
    slots = ("momentum_buffer",)

    def coefficients(self, hp: Mapping[str, float], step: int) -> dict[str, float]:
        mu = hp["momentum"]
        first = step == 1
        return {
            "momentum": mu,
            "hb_keep": choose(first, 0.0, mu),
            "hb_take": choose(first, 1.0, 1.0 - hp.get("dampening", 0.0)),
        }

    def __call__(self, u: Array, p: Array, state: Mapping[str, Array], c: Coefficients):
        b = c["hb_keep"] * state["momentum_buffer"] + c["hb_take"] * u
        # dense + u (not u + dense): the same sum, and a sparse gradient may be u
        out = c["momentum"] * b + u if self.nesterov else b
        return out, {"momentum_buffer": b}


@dataclass(frozen=True)
class EmaMomentum(Transform):
    """Momentum as an exponential moving average: ``v = momentum * v + (1 - momentum) * u``.

    The buffer starts at zero, so the first step moves by ``lr * (1 - momentum) * g``.
    """

    slots = ("momentum_buffer",)

    def coefficients(self, hp: Mapping[str, float], step: int) -> dict[str, float]:
        return {"ema_rate": 1.0 - hp["momentum"]}

    def __call__(self, u: Array, p: Array, state: Mapping[str, Array], c: Coefficients):
        v = ema(state["momentum_buffer"], u, c["ema_rate"])
        return v, {"momentum_buffer": v}


def sgd(
    *,
    momentum: bool = False,
    nesterov: bool = False,
    weight_decay: WeightDecay = None,
    maximize: bool = False,
) -> Rule:
    """Gradient descent, optionally with heavy-ball (or Nesterov) momentum.

    ::

        g_t = grad + weight_decay * w_{t-1}                  (L2, if on)
        b_1 = g_1;   b_t = momentum * b_{t-1} + (1 - dampening) * g_t
        d_t = g_t + momentum * b_t   (nesterov)   or   b_t   or   g_t (no momentum)
        w_t = w_{t-1} - lr * d_t

    The plain step is the same rule for batch GD, one-sample SGD and mini-batch SGD: they
    differ only in how ``grad`` is estimated, which is the data's business, not the rule's.

    **Conventions**: torch's heavy-ball form, lr outside the buffer; the buffer is
    initialised to the gradient at the first step; equals ``torch.optim.SGD`` to float64
    round-off. Keras puts lr inside the buffer (``m = mu*m - lr*g``), which differs after an
    lr change; optax's ``trace`` is this form with ``dampening=0``.

    Hyperparameters read each step: ``lr``, ``momentum``, ``dampening``, ``weight_decay``.

    Example:
        >>> import numpy as np
        >>> rule = sgd()
        >>> w, _ = rule.step(np.array([1.0]), np.array([2.0]), rule.init(np.zeros(1)),
        ...                  step=1, lr=0.1)
        >>> w.tolist()
        [0.8]
    """
    if nesterov and not momentum:
        raise ValueError("nesterov=True requires momentum")
    core = (HeavyBall(nesterov=nesterov),) if momentum else ()
    return chain("sgd", core, weight_decay=weight_decay, maximize=maximize)


def ema_momentum(*, weight_decay: WeightDecay = None, maximize: bool = False) -> Rule:
    """Momentum in the exponential-moving-average form of the seed document.

    ::

        v_t = momentum * v_{t-1} + (1 - momentum) * g_t,    v_0 = 0
        w_t = w_{t-1} - lr * v_t

    **Conventions**: the EMA form, buffer starting at zero. It is torch's heavy-ball form in
    disguise: ``torch.optim.SGD(lr=lr * (1 - momentum), momentum=momentum)`` (dampening 0)
    takes exactly the same steps, with a buffer ``1 / (1 - momentum)`` times this one, under
    any lr schedule (the lr sits outside the buffer in both). Mimicking the EMA with
    ``dampening=momentum`` instead is NOT the same: torch's first step then moves by
    ``lr * g``, this form by ``lr * (1 - momentum) * g``.

    Hyperparameters read each step: ``lr``, ``momentum``, ``weight_decay``.

    Example (the first step moves by ``lr * (1 - momentum) * g``):
        >>> import numpy as np
        >>> rule = ema_momentum()
        >>> w, s = rule.step(np.array([1.0]), np.array([2.0]), rule.init(np.zeros(1)),
        ...                  step=1, lr=0.1, momentum=0.9)
        >>> round(float(w[0]), 12), round(float(s["momentum_buffer"][0]), 12)
        (0.98, 0.2)
    """
    return chain("momentum", (EmaMomentum(),), weight_decay=weight_decay, maximize=maximize)
