"""ASGD (averaged SGD) and Rprop (steps from gradient signs)."""

from __future__ import annotations

from typing import Any

import torch

from .. import optimizers
from .optimizer import RuleOptimizer

__all__ = ["ASGD", "Rprop"]


class ASGD(RuleOptimizer):
    """ASGD: SGD with a decaying step size and the average of the iterates in ``state["ax"]``.

    Same signature and defaults as ``torch.optim.ASGD``; the state keeps torch's ``eta``
    and ``mu`` per parameter (0-dim tensors, on the CPU). The rule is
    :func:`descentlab.rules.asgd`.

    Example (the first step is SGD with ``lr``, held as torch holds it: a float32 ``eta``;
    the average starts at the iterate):
        >>> import torch
        >>> w = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))
        >>> opt = ASGD([w], lr=0.1, lambd=0.0)
        >>> w.grad = torch.tensor([2.0], dtype=torch.float64); opt.step()
        >>> round(w.item(), 6), round(opt.state[w]["ax"].item(), 6), opt.state[w]["eta"].dtype
        (0.8, 0.8, torch.float32)
    """

    info = optimizers.get("asgd")

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1e-2,
        lambd: float = 1e-4,
        alpha: float = 0.75,
        t0: float = 1e6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
        *,
        skip_nonfinite: bool = False,
        engine: str = "auto",
    ) -> None:
        defaults = {k: v for k, v in locals().items() if k in self.info.defaults}
        super().__init__(params, defaults, skip_nonfinite=skip_nonfinite, engine=engine)


class Rprop(RuleOptimizer):
    """Rprop: per-weight step sizes that grow while the gradient keeps its sign.

    Same signature and defaults as ``torch.optim.Rprop``; ``lr`` is the first step size of
    every weight (read when the state is created). The rule is :func:`descentlab.rules.rprop`.

    Example (two gradients of the same sign: the second step is 1.2 times longer):
        >>> import torch
        >>> w = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
        >>> opt = Rprop([w], lr=0.1)
        >>> for g in (3.0, 2.0):
        ...     w.grad = torch.tensor([g], dtype=torch.float64); opt.step()
        >>> round(w.item(), 12)
        -0.22
    """

    info = optimizers.get("rprop")

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1e-2,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50),
        *,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        skip_nonfinite: bool = False,
        engine: str = "auto",
    ) -> None:
        defaults = {k: v for k, v in locals().items() if k in self.info.defaults}
        super().__init__(params, defaults, skip_nonfinite=skip_nonfinite, engine=engine)
