"""The traced engine: the step as the user's own ``torch.compile`` sees it.

torch's documentation recommends compiling the optimizer step, ``torch.compile(opt.step)``
or a whole compiled training step. Inside that trace the drop-ins take this path (counted
as ``engine_counts["traced"]``), written so that the outer compile captures the step in one
graph and fuses the rule into it, with no graph break and no recompile from one step to the
next:

* the state is made ready outside the trace, in ``_init_group``: the hook torch.optim's
  optimizers give dynamo, which runs it in Python at trace time and guards on the state it
  leaves (:meth:`descentlab.torch.optimizer.RuleOptimizer._init_group`);
* the step count stays a 0-dim tensor: it is advanced in the graph and the rule's
  coefficients (bias corrections, the first step of a momentum buffer) are computed from it
  in the graph, in float64 like the host's; nothing is read back to Python, so neither the
  count nor a tensor learning rate changed by a scheduler recompiles;
* every parameter is stepped by :func:`~descentlab.engines.reference.apply_reference`, the
  ground truth the other engines are held to; inductor fuses what it traces.

Rules that are not element-wise (Adafactor, Muon) read norms on the host and keep the
reference path, graph breaks included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..rules.base import Rule, advance
from .reference import apply_reference, store_scalars

__all__ = ["step_traced"]


def _count_dtype(step: torch.Tensor) -> torch.dtype:
    """The precision the coefficients are computed in: float64, as on the host, where the
    device has it."""
    return torch.float32 if step.device.type == "mps" else torch.float64


def step_traced(
    rule: Rule,
    hp: Mapping[str, Any],
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    steps: Sequence[torch.Tensor],
    slots: Sequence[torch.Tensor],
    scalars: Sequence[torch.Tensor],
    measure: bool = False,
) -> list[torch.Tensor | None]:
    """One step of every parameter in ``params``, traceable by dynamo without a break.

    ``slots`` holds each parameter's slot tensors in ``rule.slots`` order, parameter after
    parameter; ``scalars`` likewise its scalar state (``rule.scalar_names``). Returns, per
    parameter, its :func:`~descentlab.engines.reference.update_stats` when ``measure``.
    """
    k, m = len(rule.slots), len(rule.scalar_names)
    out: list[torch.Tensor | None] = []
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        step = advance(steps[i])
        t = step.to(_count_dtype(step))
        state: dict[str, Any] = dict(zip(rule.slots, slots[i * k : (i + 1) * k], strict=True))
        if m:
            held = dict(zip(rule.scalar_names, scalars[i * m : (i + 1) * m], strict=True))
            c, new = rule.begin_step(hp, t, held)
            store_scalars(held, new)
        else:
            c = rule.coefficients(hp, t)
        out.append(apply_reference(rule, p, g, state, c, measure))
    return out
