"""Adam (L2 weight decay unless decoupled), AdamW (decoupled weight decay), Adamax, RAdam,
NAdam."""

from __future__ import annotations

from typing import Any

import torch

from .. import optimizers
from ..optimizers import OptimizerInfo
from .optimizer import RuleOptimizer

__all__ = ["Adam", "AdamW", "Adamax", "NAdam", "RAdam"]


def _adam_defaults(info: OptimizerInfo, args: dict[str, Any]) -> dict[str, Any]:
    """torch.optim.Adam's defaults; ``bias_correction`` only when switched off, so that the
    param groups (and checkpoints) hold torch's keys and nothing more."""
    defaults = {k: v for k, v in args.items() if k in info.defaults}
    if defaults["bias_correction"] is True:
        del defaults["bias_correction"]
    return defaults


class Adam(RuleOptimizer):
    """Adam with bias correction; ``weight_decay`` is L2 unless ``decoupled_weight_decay``.

    Same signature and defaults as ``torch.optim.Adam``, plus ``bias_correction`` (default
    True) for the Adam paper's ablation; the rule is :func:`descentlab.rules.adam`.

    Example (the first step moves each weight by ``lr * sign(g)``):
        >>> import torch
        >>> w = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
        >>> opt = Adam([w], lr=1e-3)
        >>> w.grad = torch.tensor([5.0, -0.1], dtype=torch.float64); opt.step()
        >>> [round(x, 9) for x in w.tolist()]
        [-0.001, 0.001]
    """

    info = optimizers.get("adam")

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
        bias_correction: bool = True,
        skip_nonfinite: bool = False,
        engine: str = "auto",
    ) -> None:
        defaults = _adam_defaults(self.info, locals())
        super().__init__(params, defaults, skip_nonfinite=skip_nonfinite, engine=engine)


class AdamW(RuleOptimizer):
    """Adam with decoupled weight decay, ``w -= lr * weight_decay * w`` outside the adaptive step.

    Same signature and defaults as ``torch.optim.AdamW`` (``weight_decay=1e-2``); the rule is
    :func:`descentlab.rules.adamw`.

    Example (zero gradient: only the decay acts):
        >>> import torch
        >>> w = torch.nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
        >>> opt = AdamW([w], lr=0.1, weight_decay=0.5)
        >>> w.grad = torch.zeros(1, dtype=torch.float64); opt.step()
        >>> round(w.item(), 12)
        1.9
    """

    info = optimizers.get("adamw")

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        bias_correction: bool = True,
        skip_nonfinite: bool = False,
        engine: str = "auto",
    ) -> None:
        defaults = _adam_defaults(self.info, locals())
        defaults["decoupled_weight_decay"] = True
        super().__init__(params, defaults, skip_nonfinite=skip_nonfinite, engine=engine)


class Adamax(RuleOptimizer):
    """Adamax: Adam with a decaying maximum of ``|g|`` in place of the RMS.

    Same signature and defaults as ``torch.optim.Adamax``; the rule is
    :func:`descentlab.rules.adamax`.

    Example (the first step moves each weight by ``lr * sign(g)``):
        >>> import torch
        >>> w = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
        >>> opt = Adamax([w], eps=0.0)
        >>> w.grad = torch.tensor([4.0, -0.5], dtype=torch.float64); opt.step()
        >>> [round(x, 12) for x in w.tolist()]
        [-0.002, 0.002]
    """

    info = optimizers.get("adamax")

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
        skip_nonfinite: bool = False,
        engine: str = "auto",
    ) -> None:
        defaults = {k: v for k, v in locals().items() if k in self.info.defaults}
        super().__init__(params, defaults, skip_nonfinite=skip_nonfinite, engine=engine)


class RAdam(RuleOptimizer):
    """RAdam: Adam rectified, momentum SGD until the variance of ``v`` is tractable.

    Same signature and defaults as ``torch.optim.RAdam``; ``weight_decay`` is L2 unless
    ``decoupled_weight_decay``. The rule is :func:`descentlab.rules.radam`.

    Example (the first steps are momentum SGD: step 1 moves by ``lr * g``):
        >>> import torch
        >>> w = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
        >>> opt = RAdam([w], lr=0.1)
        >>> w.grad = torch.tensor([3.0, -0.5], dtype=torch.float64); opt.step()
        >>> [round(x, 12) for x in w.tolist()]
        [-0.3, 0.05]
    """

    info = optimizers.get("radam")

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        skip_nonfinite: bool = False,
        engine: str = "auto",
    ) -> None:
        defaults = {k: v for k, v in locals().items() if k in self.info.defaults}
        super().__init__(params, defaults, skip_nonfinite=skip_nonfinite, engine=engine)


class NAdam(RuleOptimizer):
    """NAdam: Adam with Nesterov momentum on a warming-up momentum schedule.

    Same signature and defaults as ``torch.optim.NAdam`` (``weight_decay`` is L2 unless
    ``decoupled_weight_decay``); the state keeps torch's ``mu_product`` per parameter. The
    rule is :func:`descentlab.rules.nadam`.

    Example:
        >>> import torch
        >>> w = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
        >>> opt = NAdam([w], lr=0.1, eps=0.0)
        >>> w.grad = torch.tensor([3.0, -0.5], dtype=torch.float64); opt.step()
        >>> [round(x, 6) for x in w.tolist()], sorted(opt.state[w])
        ([-0.105645, 0.105645], ['exp_avg', 'exp_avg_sq', 'mu_product', 'step'])
    """

    info = optimizers.get("nadam")

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        skip_nonfinite: bool = False,
        engine: str = "auto",
    ) -> None:
        defaults = {k: v for k, v in locals().items() if k in self.info.defaults}
        super().__init__(params, defaults, skip_nonfinite=skip_nonfinite, engine=engine)
