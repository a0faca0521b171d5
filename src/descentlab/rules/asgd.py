"""ASGD and Rprop: SGD with an averaged copy of the iterates, and steps from gradient signs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .base import Array, Coefficients, Rule, Transform, at_least, choose, clip, sign, where
from .common import AddL2, FlipSign, WeightDecay


@dataclass(frozen=True)
class ScaleByEta(Transform):
    """ASGD's step: ``u = -eta * u - lambd * eta * p`` with a decaying step size ``eta``.

    ``eta`` and ``mu`` (the averaging weight) are scalars of the state, as in
    torch.optim.ASGD: a step uses the values the previous step stored (``eta`` starts at the
    ``lr`` of the parameter's group, ``mu`` at 1), then stores the next ones, computed from
    the ``lr`` of this step. A schedule's change of ``lr`` therefore acts one step late.
    """

    scalars = ("eta", "mu")

    def initial(self, hp: Mapping[str, float]) -> dict[str, float]:
        return {"eta": hp["lr"], "mu": 1.0}

    def advance_scalars(self, hp: Mapping[str, float], step: int, scalars: Mapping[str, Array]):
        lr = hp["lr"]
        return {
            "eta": lr / ((1 + hp["lambd"] * lr * step) ** hp["alpha"]),
            "mu": 1 / at_least(step - hp["t0"], 1),
        }

    def coefficients(  # type: ignore[override]
        self,
        hp: Mapping[str, float],
        step: int,
        before: Mapping[str, float],
        after: Mapping[str, float],
    ) -> dict[str, float]:
        eta, mu = before["eta"], before["mu"]
        return {
            "eta": eta,
            "lambd_eta": hp["lambd"] * eta,
            "ax_mu": mu,
            "ax_keep": choose(mu == 1, 0.0, 1.0),  # mu = 1: the average IS the iterate
        }

    def __call__(self, u: Array, p: Array, state: Mapping[str, Array], c: Coefficients):
        return -c["lambd_eta"] * p - c["eta"] * u, {}


@dataclass(frozen=True)
class AverageIterates(Transform):
    """``ax = ax + mu * (w_t - ax)``: the running average of the iterates (Polyak-Ruppert),
    a read-out that never feeds back into the step; ``ax = w_t`` while ``mu = 1``."""

    slots = ("ax",)

    def __call__(self, u: Array, p: Array, state: Mapping[str, Array], c: Coefficients):
        ax = state["ax"] * c["ax_keep"]
        return u, {"ax": ax + (p + u - ax) * c["ax_mu"]}


def asgd(*, weight_decay: WeightDecay = None, maximize: bool = False) -> Rule:
    """ASGD (Polyak & Juditsky, 1992), torch.optim's form: SGD with a decaying step and an
    average of the iterates kept beside them (``ax``).

    ::

        g_t = grad + weight_decay * w_{t-1}                       (L2)
        w_t = w_{t-1} * (1 - lambd * eta_{t-1}) - eta_{t-1} * g_t
        ax_t = w_t                          if mu_{t-1} = 1
             = ax_{t-1} + mu_{t-1} * (w_t - ax_{t-1})   otherwise
        eta_t = lr / (1 + lambd * lr * t)**alpha;   mu_t = 1 / max(1, t - t0)
        eta_0 = lr;  mu_0 = 1

    The parameters themselves follow SGD with the decaying step; the average ``ax`` (in the
    state) is what the method returns in theory; read it out to evaluate.

    **Conventions**: torch's (the step and the averaging use the values stored at the
    previous step; ``t0 = 1e6`` steps before averaging starts); equals ``torch.optim.ASGD``
    to float64 round-off.

    Hyperparameters read each step: ``lr``, ``lambd``, ``alpha``, ``t0``, ``weight_decay``;
    read when the state is created: ``lr`` (the first ``eta``).

    Example (the first step is SGD with ``lr``, shrunk by ``lambd * lr``):
        >>> import numpy as np
        >>> rule = asgd()
        >>> hp = dict(lr=0.1, lambd=0.5, alpha=0.75, t0=1e6)
        >>> w, s = rule.step(np.array([1.0]), np.array([2.0]), rule.init(np.zeros(1), hp),
        ...                  step=1, **hp)
        >>> round(float(w[0]), 12), s["ax"].tolist(), round(float(s["eta"]), 12)
        (0.75, [0.75], 0.096406879469)
    """
    head: list[Transform] = [FlipSign()] if maximize else []
    if weight_decay == "l2":
        head.append(AddL2())
    elif weight_decay is not None:
        raise ValueError(f"ASGD's weight_decay is 'l2' or None, got {weight_decay!r}")
    return Rule("asgd", (*head, ScaleByEta(), AverageIterates()))


@dataclass(frozen=True)
class ScaleByRprop(Transform):
    """Rprop's step: ``u = -sign(g) * s`` with a per-weight step size ``s`` that grows by
    ``etaplus`` while the gradient keeps its sign and shrinks by ``etaminus`` when it flips
    (the step is then skipped and the gradient forgotten: iRprop-)."""

    slots = ("prev", "step_size")

    def initial(self, hp: Mapping[str, float]) -> dict[str, float]:
        return {"step_size": hp["lr"]}

    def coefficients(self, hp: Mapping[str, float], step: int) -> dict[str, float]:
        return {
            "etaminus": hp["etaminus"],
            "etaplus": hp["etaplus"],
            "step_size_min": hp["step_size_min"],
            "step_size_max": hp["step_size_max"],
        }

    def __call__(self, u: Array, p: Array, state: Mapping[str, Array], c: Coefficients):
        agree = sign(u * state["prev"])  # +1 same sign, -1 flipped, 0 either is 0 (or NaN)
        one = agree * 0 + 1  # an array: where() of two numbers would take a default dtype
        factor = where(agree > 0, c["etaplus"], where(agree < 0, c["etaminus"], one))
        size = clip(state["step_size"] * factor, c["step_size_min"], c["step_size_max"])
        g = where(agree < 0, 0 * u, u)  # a flip: no step, and no flip detected next time
        return -sign(g) * size, {"prev": g, "step_size": size}


def rprop(*, maximize: bool = False) -> Rule:
    """Rprop (Riedmiller & Braun, 1993), the iRprop- variant of torch.optim: each weight
    moves by its own step size in the direction of its gradient's sign; the size adapts.

    ::

        s = sign(g_t * g_{t-1})
        size_t = clip(size_{t-1} * (etaplus if s > 0, etaminus if s < 0, 1 if s = 0),
                      step_size_min, step_size_max);       size_0 = lr
        g_t = 0 where s < 0                                (skip, and forget the flip)
        w_t = w_{t-1} - sign(g_t) * size_t;   g_{t-1} <- g_t

    ``lr`` is read only when a parameter's state is created (the first step size), so a
    learning-rate schedule has no effect, as in torch.

    **Conventions**: torch's (iRprop-, no weight decay); the sign of NaN is 0, as torch's,
    so a NaN gradient moves no weight (it is kept in ``prev``). Equals
    ``torch.optim.Rprop`` to float64 round-off (its arithmetic is exact: signs, products by
    the etas and clips).

    Hyperparameters read each step: ``etaminus``, ``etaplus``, ``step_size_min``,
    ``step_size_max``; read when the state is created: ``lr``.

    Example (two steps with the same sign: the second is ``etaplus`` times longer):
        >>> import numpy as np
        >>> rule = rprop()
        >>> hp = dict(lr=0.1, etaminus=0.5, etaplus=1.2, step_size_min=1e-6, step_size_max=50)
        >>> w, s = rule.step(np.zeros(1), np.array([3.0]), rule.init(np.zeros(1), hp), step=1, **hp)
        >>> w, s = rule.step(w, np.array([2.0]), s, step=2, **hp)
        >>> round(float(w[0]), 12), s["step_size"].tolist()
        (-0.22, [0.12])
    """
    head: tuple[Transform, ...] = (FlipSign(),) if maximize else ()
    return Rule("rprop", (*head, ScaleByRprop()))
