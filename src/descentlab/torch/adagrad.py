"""Adagrad and Adadelta: steps scaled by each weight's own gradient history."""

from __future__ import annotations

from typing import Any

import torch

from .. import optimizers
from .optimizer import RuleOptimizer

__all__ = ["Adadelta", "Adagrad"]


class Adagrad(RuleOptimizer):
    """Adagrad with torch's ``lr_decay`` and ``initial_accumulator_value``.

    Same signature and defaults as ``torch.optim.Adagrad``; the rule is
    :func:`descentlab.rules.adagrad`. As torch's, it creates every parameter's state
    (``step`` 0, ``sum`` at ``initial_accumulator_value``) in the constructor, and takes
    ``initial_accumulator_value`` from the constructor (a param group's own is not read).
    Sparse gradients are refused (torch's Adagrad takes them).

    Example (the first step from a zero accumulator moves each weight by ``lr``):
        >>> import torch
        >>> w = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
        >>> opt = Adagrad([w], lr=0.1, eps=0.0)
        >>> w.grad = torch.tensor([3.0, -0.5], dtype=torch.float64); opt.step()
        >>> w.tolist()
        [-0.1, 0.1]
    """

    info = optimizers.get("adagrad")

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        skip_nonfinite: bool = False,
        engine: str = "auto",
    ) -> None:
        defaults = {k: v for k, v in locals().items() if k in self.info.defaults}
        super().__init__(params, defaults, skip_nonfinite=skip_nonfinite, engine=engine)
        self._create_state_now()


class Adadelta(RuleOptimizer):
    """Adadelta: steps in the units of past steps, ``lr`` a multiplier (1.0: the paper's).

    Same signature and defaults as ``torch.optim.Adadelta``; the rule is
    :func:`descentlab.rules.adadelta`.

    Example (first step: ``sqrt(eps) / sqrt((1 - rho) * g**2 + eps) * g``):
        >>> import torch
        >>> w = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
        >>> opt = Adadelta([w], rho=0.75, eps=1.0)
        >>> w.grad = torch.tensor([2.0], dtype=torch.float64); opt.step()
        >>> round(w.item(), 12)  # -sqrt(1) / sqrt(0.25 * 4 + 1) * 2 = -sqrt(2)
        -1.414213562373
    """

    info = optimizers.get("adadelta")

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        capturable: bool = False,
        maximize: bool = False,
        differentiable: bool = False,
        skip_nonfinite: bool = False,
        engine: str = "auto",
    ) -> None:
        defaults = {k: v for k, v in locals().items() if k in self.info.defaults}
        super().__init__(params, defaults, skip_nonfinite=skip_nonfinite, engine=engine)
