"""Adafactor and Muon: rules that are not element-wise, run by the reference engine."""

from __future__ import annotations

from typing import Any

import torch

from .. import optimizers
from .optimizer import RuleOptimizer

__all__ = ["Adafactor", "Muon"]


class Adafactor(RuleOptimizer):
    """Adafactor: factored second moments (``row_var``/``col_var`` of every tensor with 2 or
    more dimensions, ``variance`` of a vector) and a relative step size.

    Same signature and defaults as ``torch.optim.Adafactor``; complex parameters are refused
    at the step, as torch refuses them. The rule (:func:`descentlab.rules.adafactor`)
    reduces over rows and columns, so every engine hands it to the reference engine
    (``engine_counts["reference"]``).

    Example (a vector's first step from ``w = 0``: ``eps[1] * lr`` against the gradient):
        >>> import torch
        >>> w = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
        >>> opt = Adafactor([w], lr=0.01)
        >>> w.grad = torch.tensor([3.0, -0.5], dtype=torch.float64); opt.step()
        >>> [round(x, 12) for x in w.tolist()]
        [-1e-05, 1e-05]
    """

    info = optimizers.get("adafactor")

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1e-2,
        beta2_decay: float = -0.8,
        eps: tuple[float | None, float] = (None, 1e-3),
        d: float = 1.0,
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        skip_nonfinite: bool = False,
        engine: str = "auto",
    ) -> None:
        defaults = {k: v for k, v in locals().items() if k in self.info.defaults}
        super().__init__(params, defaults, skip_nonfinite=skip_nonfinite, engine=engine)


class Muon(RuleOptimizer):
    """Muon: momentum orthogonalized by Newton-Schulz iterations, for 2-D parameters.

    Same signature and defaults as ``torch.optim.Muon`` (its state is a ``momentum_buffer``
    per parameter, and no ``step``); a parameter that is not a matrix is refused when the
    optimizer is built, as torch refuses it. The iterations run in bfloat16 with torch's
    operations, so the drop-in equals ``torch.optim.Muon`` on the same hardware. The rule
    (:func:`descentlab.rules.muon`) multiplies matrices, so every engine hands it to the
    reference engine (``engine_counts["reference"]``).
    """

    info = optimizers.get("muon")

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = (3.4445, -4.775, 2.0315),
        eps: float = 1e-7,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = None,
        *,
        skip_nonfinite: bool = False,
        engine: str = "auto",
    ) -> None:
        defaults = {k: v for k, v in locals().items() if k in self.info.defaults}
        super().__init__(params, defaults, skip_nonfinite=skip_nonfinite, engine=engine)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of matrices; any other parameter is refused (``ValueError``)."""
        super().add_param_group(param_group)
        for p in self.param_groups[-1]["params"]:
            if p.ndim != 2:
                self.param_groups.pop()
                raise ValueError(
                    f"Muon only supports 2D parameters whereas we found a parameter with size: "
                    f"{p.size()} (valid: matrices; optimize biases, norms and embeddings with "
                    "another optimizer, such as AdamW)"
                )
