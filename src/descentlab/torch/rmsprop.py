"""RMSprop, with torch's ``centered`` and ``momentum`` options."""

from __future__ import annotations

from typing import Any

import torch

from .. import optimizers
from .optimizer import RuleOptimizer

__all__ = ["RMSprop"]


class RMSprop(RuleOptimizer):
    """RMSProp with torch's ``centered`` and ``momentum`` options.

    Same signature and defaults as ``torch.optim.RMSprop``; the rule is
    :func:`descentlab.rules.rmsprop`.

    Example:
        >>> import torch
        >>> w = torch.nn.Parameter(torch.tensor([0.0], dtype=torch.float64))
        >>> opt = RMSprop([w], lr=0.01)
        >>> w.grad = torch.tensor([4.0], dtype=torch.float64); opt.step()
        >>> round(w.item(), 6)  # first step: lr * g / sqrt((1 - alpha) * g**2)
        -0.1
    """

    info = optimizers.get("rmsprop")

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        *,
        skip_nonfinite: bool = False,
        engine: str = "auto",
    ) -> None:
        defaults = {k: v for k, v in locals().items() if k in self.info.defaults}
        super().__init__(params, defaults, skip_nonfinite=skip_nonfinite, engine=engine)
