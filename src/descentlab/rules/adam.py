"""Adam and its relatives: momentum on the gradient, RMSProp on its scale, bias correction."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .base import (
    Array,
    Coefficients,
    Rule,
    Transform,
    absolute,
    choose,
    ema,
    like,
    maximum,
    mean_of_squares,
    sqrt,
)
from .common import WeightDecay, chain


@dataclass(frozen=True)
class ScaleByAdam(Transform):
    """``u = m_hat / (sqrt(v_hat) + eps)`` from the two moment estimates of ``g``."""

    amsgrad: bool = False
    bias_correction: bool = True

    @property
    def slots(self) -> tuple[str, ...]:  # type: ignore[override]
        base = ("exp_avg", "exp_avg_sq")
        return (*base, "max_exp_avg_sq") if self.amsgrad else base

    def coefficients(self, hp: Mapping[str, float], step: int) -> dict[str, float]:
        beta1, beta2 = hp["beta1"], hp["beta2"]
        if self.bias_correction:
            bc1, bc2_sqrt = 1.0 - beta1**step, (1.0 - beta2**step) ** 0.5
        else:
            bc1, bc2_sqrt = 1.0, 1.0
        # Reciprocals on the host: a division per element costs several multiplications
        # (on a 2-core CPU, Adam's step is bound by its divisions, not by memory).
        return {
            "rate1": 1.0 - beta1,
            "beta2": beta2,
            "rate2": 1.0 - beta2,
            "eps": hp["eps"],
            "inv_bc1": 1.0 / bc1,
            "inv_bc2_sqrt": 1.0 / bc2_sqrt,
        }

    def __call__(self, u: Array, p: Array, state: Mapping[str, Array], c: Coefficients):
        m = ema(state["exp_avg"], u, c["rate1"])  # first moment: mean of gradients
        v = mean_of_squares(state["exp_avg_sq"], u, c["beta2"], c["rate2"])
        new = {"exp_avg": m, "exp_avg_sq": v}
        if self.amsgrad:  # never let the denominator shrink (Reddi et al., 2018)
            v = new["max_exp_avg_sq"] = maximum(state["max_exp_avg_sq"], v)
        # Bias correction: m and v start at 0, so early averages are biased toward 0.
        m_hat = m * c["inv_bc1"]
        denom = sqrt(v) * c["inv_bc2_sqrt"] + c["eps"]  # sqrt(v_hat) + eps
        return m_hat / denom, new


def adam(
    *,
    amsgrad: bool = False,
    bias_correction: bool = True,
    weight_decay: WeightDecay = None,
    maximize: bool = False,
) -> Rule:
    """Adam: adaptive moment estimation (Kingma & Ba, 2015), with AMSGrad as an option.

    ::

        g_t = grad + weight_decay * w_{t-1}                       (L2: torch's Adam)
        m_t = beta1 * m_{t-1} + (1 - beta1) * g_t
        v_t = beta2 * v_{t-1} + (1 - beta2) * g_t**2
        vmax_t = max(vmax_{t-1}, v_t)                             (amsgrad)
        m_hat = m_t / (1 - beta1**t);  v_hat = v_t / (1 - beta2**t)
        w_t = w_{t-1} - lr * m_hat / (sqrt(v_hat) + eps)
        w_t = w_t - lr * weight_decay * w_{t-1}                   (decoupled: AdamW)

    ``bias_correction=False`` drops the two divisions (the ablation of the Adam paper,
    section 6.4). ``weight_decay="l2"`` is ``torch.optim.Adam(weight_decay=...)``;
    ``"decoupled"`` is ``torch.optim.AdamW``: the same pieces, in a different order.

    **Conventions**: eps outside the square root and added after bias correction (torch,
    the seed, optax with ``eps_root=0``); Keras adds eps to the uncorrected root ("epsilon
    hat"). Moments start at zero. Equals ``torch.optim.Adam``/``AdamW`` to float64 round-off.

    Hyperparameters read each step: ``lr``, ``beta1``, ``beta2``, ``eps``, ``weight_decay``.

    Example (the first step moves every weight by ``lr * sign(g)`` when eps is negligible):
        >>> import numpy as np
        >>> rule = adam()
        >>> w, _ = rule.step(np.zeros(3), np.array([3.0, -0.02, 1e4]), rule.init(np.zeros(3)),
        ...                  step=1, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-12)
        >>> np.round(w, 9).tolist()
        [-0.001, 0.001, -0.001]
    """
    core = (ScaleByAdam(amsgrad=amsgrad, bias_correction=bias_correction),)
    return chain("adam", core, weight_decay=weight_decay, maximize=maximize)


def adamw(*, amsgrad: bool = False, bias_correction: bool = True, maximize: bool = False) -> Rule:
    """AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay.

    ::

        w_t = w_{t-1} - lr * m_hat / (sqrt(v_hat) + eps) - lr * weight_decay * w_{t-1}

    **Conventions**: the decay is multiplied by ``lr`` (torch, optax); the paper and Keras
    schedule it separately. Equals ``torch.optim.AdamW`` to float64 round-off.

    Example (zero gradient: only the decay acts, ``w * (1 - lr * weight_decay)``):
        >>> import numpy as np
        >>> rule = adamw()
        >>> w, _ = rule.step(np.array([2.0]), np.array([0.0]), rule.init(np.zeros(1)), step=1,
        ...                  lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.5)
        >>> round(float(w[0]), 12)
        1.9
    """
    return adam(
        amsgrad=amsgrad,
        bias_correction=bias_correction,
        weight_decay="decoupled",
        maximize=maximize,
    )


@dataclass(frozen=True)
class ScaleByAdamax(Transform):
    """``u = m_hat / n`` with ``n`` a decaying maximum of ``|g|`` (the infinity norm)."""

    slots = ("exp_avg", "exp_inf")

    def coefficients(self, hp: Mapping[str, float], step: int) -> dict[str, float]:
        beta1 = hp["beta1"]
        return {
            "rate1": 1.0 - beta1,
            "beta2": hp["beta2"],
            "eps": hp["eps"],
            "inv_bc1": 1.0 / (1.0 - beta1**step),
        }

    def __call__(self, u: Array, p: Array, state: Mapping[str, Array], c: Coefficients):
        m = ema(state["exp_avg"], u, c["rate1"])
        n = maximum(state["exp_inf"] * c["beta2"], absolute(u) + c["eps"])  # eps inside the max
        return m * c["inv_bc1"] / n, {"exp_avg": m, "exp_inf": n}


def adamax(*, weight_decay: WeightDecay = None, maximize: bool = False) -> Rule:
    """Adamax (Kingma & Ba, 2015, section 7.1): Adam with the infinity norm for the scale.

    ::

        g_t = grad + weight_decay * w_{t-1}                       (L2)
        m_t = beta1 * m_{t-1} + (1 - beta1) * g_t
        n_t = max(beta2 * n_{t-1}, |g_t| + eps)
        w_t = w_{t-1} - lr / (1 - beta1**t) * m_t / n_t

    **Conventions**: eps inside the maximum (torch; the paper has no eps, optax and Keras
    add it after the maximum); only the first moment is bias-corrected (``n`` needs none).
    Equals ``torch.optim.Adamax`` to float64 round-off.

    Hyperparameters read each step: ``lr``, ``beta1``, ``beta2``, ``eps``, ``weight_decay``.

    Example (the first step moves every weight by ``lr * sign(g)`` when eps is negligible):
        >>> import numpy as np
        >>> rule = adamax()
        >>> w, s = rule.step(np.zeros(2), np.array([4.0, -0.5]), rule.init(np.zeros(2)),
        ...                  step=1, lr=2e-3, beta1=0.9, beta2=0.999, eps=0.0)
        >>> np.round(w, 12).tolist(), s["exp_inf"].tolist()
        ([-0.002, 0.002], [4.0, 0.5])
    """
    return chain("adamax", (ScaleByAdamax(),), weight_decay=weight_decay, maximize=maximize)


@dataclass(frozen=True)
class ScaleByRAdam(Transform):
    """``u = m_hat * r_t / (sqrt(v_hat) + eps)`` once the variance is tractable, else
    ``u = m_hat`` (momentum SGD): the rectification of Liu et al. (2020).

    Whether step ``t`` is rectified (``rho_t > 5``) and ``r_t`` depend on ``beta2`` and
    ``t`` only, so both are host coefficients: ``ada`` (``r_t * sqrt(1 - beta2**t)``, or 0),
    ``sgd`` (0, or 1) and ``guard`` (0, or 1 added to the denominator so that ``v = 0``
    with ``eps = 0`` cannot make ``0 / 0`` on an unrectified step).
    """

    slots = ("exp_avg", "exp_avg_sq")

    def coefficients(self, hp: Mapping[str, float], step: int) -> dict[str, float]:
        beta1, beta2 = hp["beta1"], hp["beta2"]
        bc2 = 1.0 - beta2**step
        rho_inf = 2.0 / (1.0 - beta2) - 1.0
        rho_t = rho_inf - 2.0 * step * beta2**step / bc2
        rectified = rho_t > 5.0
        # positive where rectified; abs() keeps the unused branch real (a traced step
        # computes both sides of choose())
        num = (rho_t - 4.0) * (rho_t - 2.0) * rho_inf
        ratio = num / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)
        rect = abs(ratio) ** 0.5
        return {
            "rate1": 1.0 - beta1,
            "beta2": beta2,
            "rate2": 1.0 - beta2,
            "eps": hp["eps"],
            "inv_bc1": 1.0 / (1.0 - beta1**step),
            "ada": choose(rectified, rect * bc2**0.5, 0.0),
            "sgd": choose(rectified, 0.0, 1.0),
            "guard": choose(rectified, 0.0, 1.0),
        }

    def __call__(self, u: Array, p: Array, state: Mapping[str, Array], c: Coefficients):
        m = ema(state["exp_avg"], u, c["rate1"])
        v = mean_of_squares(state["exp_avg_sq"], u, c["beta2"], c["rate2"])
        m_hat = m * c["inv_bc1"]
        scale = c["ada"] / (sqrt(v) + c["eps"] + c["guard"]) + c["sgd"]
        return m_hat * scale, {"exp_avg": m, "exp_avg_sq": v}


def radam(*, weight_decay: WeightDecay = None, maximize: bool = False) -> Rule:
    """RAdam (Liu et al., 2020): Adam whose adaptive step is switched on, and rescaled,
    only once the variance of its denominator is tractable.

    ::

        m_t, v_t as Adam's;  m_hat = m_t / (1 - beta1**t)
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 t beta2**t / (1 - beta2**t)
        if rho_t > 5:
            r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
            w_t = w_{t-1} - lr * m_hat * r_t * sqrt(1 - beta2**t) / (sqrt(v_t) + eps)
        else:
            w_t = w_{t-1} - lr * m_hat                             (momentum SGD)

    ``weight_decay="l2"`` is torch's default, ``"decoupled"`` its
    ``decoupled_weight_decay=True`` (AdamW-style, multiplied by ``lr``).

    **Conventions**: threshold ``rho_t > 5`` and eps added to ``sqrt(v_t)`` before the bias
    correction of the root (torch; the paper's code uses ``rho_t >= 5``). With
    ``beta2 = 0.999`` the first rectified step is ``t = 6``. Equals ``torch.optim.RAdam``
    to float64 round-off.

    Hyperparameters read each step: ``lr``, ``beta1``, ``beta2``, ``eps``, ``weight_decay``.

    Example (the first five steps are momentum SGD: step 1 moves by ``lr * g``):
        >>> import numpy as np
        >>> rule = radam()
        >>> w, _ = rule.step(np.zeros(2), np.array([3.0, -0.5]), rule.init(np.zeros(2)),
        ...                  step=1, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8)
        >>> np.round(w, 12).tolist()
        [-0.3, 0.05]
    """
    return chain("radam", (ScaleByRAdam(),), weight_decay=weight_decay, maximize=maximize)


def _nadam_mu(hp: Mapping[str, float], step: int) -> float:
    """NAdam's momentum schedule ``mu_t = beta1 * (1 - 0.5 * 0.96**(t * momentum_decay))``."""
    return hp["beta1"] * (1.0 - 0.5 * 0.96 ** (step * hp["momentum_decay"]))


@dataclass(frozen=True)
class ScaleByNAdam(Transform):
    """``u = ((1 - mu_t) / (1 - P_t) * g + mu_{t+1} / (1 - P_{t+1}) * m) / (sqrt(v_hat) + eps)``:
    Adam with a Nesterov look-ahead on a scheduled momentum ``mu_t`` (Dozat, 2016).

    ``P_t = mu_1 * ... * mu_t`` is kept per parameter (``mu_product``, a scalar of the
    state, as torch.optim.NAdam keeps it: its float32 rounding is part of the rule), so a
    change of ``beta1`` mid-run acts from then on, as in torch.
    """

    slots = ("exp_avg", "exp_avg_sq")
    scalars = ("mu_product",)

    def initial(self, hp: Mapping[str, float]) -> dict[str, float]:
        return {"mu_product": 1.0}

    def advance_scalars(self, hp: Mapping[str, float], step: int, scalars: Mapping[str, Array]):
        product = scalars["mu_product"]
        return {"mu_product": product * like(_nadam_mu(hp, step), product)}

    def coefficients(  # type: ignore[override]
        self,
        hp: Mapping[str, float],
        step: int,
        before: Mapping[str, float],
        after: Mapping[str, float],
    ) -> dict[str, float]:
        beta1, beta2 = hp["beta1"], hp["beta2"]
        mu, mu_next = _nadam_mu(hp, step), _nadam_mu(hp, step + 1)
        product = after["mu_product"]
        return {
            "rate1": 1.0 - beta1,
            "beta2": beta2,
            "rate2": 1.0 - beta2,
            "eps": hp["eps"],
            "inv_bc2": 1.0 / (1.0 - beta2**step),
            "nadam_g": (1.0 - mu) / (1.0 - product),
            "nadam_m": mu_next / (1.0 - product * mu_next),
        }

    def __call__(self, u: Array, p: Array, state: Mapping[str, Array], c: Coefficients):
        m = ema(state["exp_avg"], u, c["rate1"])
        v = mean_of_squares(state["exp_avg_sq"], u, c["beta2"], c["rate2"])
        denom = sqrt(v * c["inv_bc2"]) + c["eps"]
        return (c["nadam_g"] * u + c["nadam_m"] * m) / denom, {"exp_avg": m, "exp_avg_sq": v}


def nadam(*, weight_decay: WeightDecay = None, maximize: bool = False) -> Rule:
    """NAdam (Dozat, 2016): Adam with Nesterov momentum on a warming-up momentum schedule.

    ::

        g_t = grad + weight_decay * w_{t-1}                       (L2: torch's default)
        mu_t = beta1 * (1 - 0.5 * 0.96**(t * momentum_decay));  P_t = mu_1 * ... * mu_t
        m_t = beta1 * m_{t-1} + (1 - beta1) * g_t
        v_t = beta2 * v_{t-1} + (1 - beta2) * g_t**2
        denom = sqrt(v_t / (1 - beta2**t)) + eps
        w_t = w_{t-1} - lr * (1 - mu_t) / (1 - P_t) * g_t / denom
                      - lr * mu_{t+1} / (1 - P_t * mu_{t+1}) * m_t / denom
        w_t = w_t - lr * weight_decay * w_{t-1}                   (decoupled: NAdamW)

    **Conventions**: torch's (the paper's schedule with ``momentum_decay = 0.004``); ``P_t``
    is state (``mu_product``), kept in the scalar dtype of torch (float32 unless float64 is
    the default) and rounded there at each step. Keras' Nadam uses the same schedule;
    optax's ``nadam`` uses a constant ``beta1`` (no schedule, no product). Equals
    ``torch.optim.NAdam`` to float64 round-off.

    Hyperparameters read each step: ``lr``, ``beta1``, ``beta2``, ``eps``, ``momentum_decay``,
    ``weight_decay``.

    Example (the first step moves each weight by ``lr * sign(g)`` times a constant near 1):
        >>> import numpy as np
        >>> rule = nadam()
        >>> state = rule.init(np.zeros(2))
        >>> w, s = rule.step(np.zeros(2), np.array([3.0, -0.5]), state, step=1, lr=0.1,
        ...                  beta1=0.9, beta2=0.999, eps=0.0, momentum_decay=4e-3)
        >>> np.round(w, 6).tolist(), round(float(s["mu_product"]), 6)
        ([-0.105645, 0.105645], 0.450073)
    """
    return chain("nadam", (ScaleByNAdam(),), weight_decay=weight_decay, maximize=maximize)
