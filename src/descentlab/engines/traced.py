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
from .policy import compute_dtype
from .reference import apply_reference

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
    parameter; ``scalars`` likewise its scalar state (``rule.scalar_names``). Every step
    count (and scalar) has one dtype and device (:func:`traceable` checks it). Returns, per
    parameter, its :func:`~descentlab.engines.reference.update_stats` when ``measure``.

    The coefficients of all the parameters are computed at once, from the vector of their
    step counts: one small computation that inductor keeps in a buffer every parameter's
    loop reads (per parameter, it would inline the scalar math, ``pow`` included, into the
    element loop and redo it for every vector of elements).
    """
    k, m = len(rule.slots), len(rule.scalar_names)
    for step in steps:
        advance(step)
    t = torch.stack(list(steps)).to(_count_dtype(steps[0]))
    if m:
        held = {name: torch.stack(list(scalars[j::m])) for j, name in enumerate(rule.scalar_names)}
        c, new = rule.begin_step(hp, t, held)
        for j, name in enumerate(rule.scalar_names):
            for i in range(len(params)):
                scalars[i * m + j].copy_(new[name][i])
    else:
        c = rule.coefficients(hp, t)
    # The coefficients go in as the host's floats do: rounded to the precision the
    # parameter is computed in (float32 arithmetic stays float32 in the kernel).
    vectors = [name for name, v in c.items() if isinstance(v, torch.Tensor)]
    by_dtype: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}
    out: list[torch.Tensor | None] = []
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        key = (compute_dtype(p.dtype), p.device)
        if key not in by_dtype and vectors:
            table = torch.stack(
                [c[name].to(dtype=key[0], device=key[1]).expand(len(params)) for name in vectors]
            )
            by_dtype[key] = _stored(table)
        ci = dict(c)
        for j, name in enumerate(vectors):
            ci[name] = by_dtype[key][j, i]
        state = dict(zip(rule.slots, slots[i * k : (i + 1) * k], strict=True))
        out.append(apply_reference(rule, p, g, state, ci, measure))
    return out


def _stored(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself, made a buffer of its own in inductor's code: the maximum of two copies
    is exact, and a reduction is always stored, where a pointwise value would be
    recomputed inside every loop that reads it (scalar code per vector of elements, which
    a C++ compiler cannot hoist past the loop's stores)."""
    return torch.stack([x, x]).amax(0)


def traceable(steps: Sequence[torch.Tensor], scalars: Sequence[torch.Tensor]) -> bool:
    """Whether :func:`step_traced` can take a group: its step counts (and its scalars) of
    one dtype and on one device, so they stack into one vector."""
    for group in (steps, scalars):
        if group and any(x.dtype != group[0].dtype or x.device != group[0].device for x in group):
            return False
    return True
