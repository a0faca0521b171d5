"""SGD (heavy-ball/Nesterov momentum, torch's form) and momentum in the seed's EMA form."""

from __future__ import annotations

from typing import Any

import torch

from .. import optimizers
from .optimizer import RuleOptimizer

__all__ = ["SGD", "Momentum"]


class SGD(RuleOptimizer):
    """Stochastic gradient descent with optional heavy-ball/Nesterov momentum.

    Same signature and defaults as ``torch.optim.SGD``; the rule is
    :func:`descentlab.rules.sgd` (formula and conventions there).

    Example:
        >>> import torch
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = SGD([w], lr=0.1, momentum=0.9)
        >>> w.grad = torch.tensor([2.0]); opt.step()
        >>> w.tolist()
        [0.800000011920929]
    """

    info = optimizers.get("sgd")

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float | torch.Tensor = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
        skip_nonfinite: bool = False,
        engine: str = "auto",
    ) -> None:
        defaults = {k: v for k, v in locals().items() if k in self.info.defaults}
        super().__init__(params, defaults, skip_nonfinite=skip_nonfinite, engine=engine)


class Momentum(RuleOptimizer):
    """SGD with momentum in the seed document's EMA form (``v0 = 0``).

    ``v = momentum * v + (1 - momentum) * g; w -= lr * v``. See
    :func:`descentlab.rules.ema_momentum` for how it maps onto torch's heavy-ball form.

    Example (the first step is ``lr * (1 - momentum) * g``):
        >>> import torch
        >>> w = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
        >>> opt = Momentum([w], lr=0.1, momentum=0.9)
        >>> w.grad = torch.tensor([2.0], dtype=torch.float64); opt.step()
        >>> round(w.item(), 12)
        0.98
    """

    info = optimizers.get("momentum")

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 0,
        *,
        maximize: bool = False,
        skip_nonfinite: bool = False,
        engine: str = "auto",
    ) -> None:
        defaults = {k: v for k, v in locals().items() if k in self.info.defaults}
        super().__init__(params, defaults, skip_nonfinite=skip_nonfinite, engine=engine)
