"""The reference engine: the pure rule on one tensor at a time, written back in place."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..rules.base import Rule
from .policy import compute_dtype, is_low_precision


def real(x: torch.Tensor) -> torch.Tensor:
    """Complex tensors are updated as pairs of reals, as torch.optim does."""
    return torch.view_as_real(x) if x.is_complex() else x


def compute(
    rule: Rule,
    p: torch.Tensor,
    g: torch.Tensor,
    slots: Mapping[str, torch.Tensor],
    c: Mapping[str, Any],
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Evaluate the rule in the precision the engine policy gives (float32 for 16-bit
    tensors: ``eps=1e-8`` is 0 in float16); ``write_back`` rounds the result once."""
    if is_low_precision(p.dtype):
        wide = compute_dtype(p.dtype)
        return rule.update(p.to(wide), g.to(wide), {k: v.to(wide) for k, v in slots.items()}, c)
    return rule.update(p, g, slots, c)


def steps_taken(state: Mapping[str, Any], rule: Rule) -> float:
    """The step count a parameter's state records.

    A state_dict from torch.optim.SGD has a momentum buffer but no ``step``: a buffer then
    means the parameter has stepped at least once (which is all heavy-ball needs to know).
    """
    if "step" in state:
        return float(state["step"])
    return float(any(state.get(k) is not None for k in rule.slots))


def write_back(
    p: torch.Tensor,
    slots: Mapping[str, torch.Tensor],
    new_p: torch.Tensor,
    new_state: Mapping[str, torch.Tensor],
) -> None:
    p.copy_(new_p)
    for k, v in new_state.items():
        slots[k].copy_(v)


def update_stats(p: torch.Tensor, new_p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``[||new_p - p||^2, ||p||^2, ||g||^2]``, summed in the step's precision (float64 for
    float64, else float32: :func:`~descentlab.engines.policy.compute_dtype`).

    What telemetry reads from a step, computed where the step is computed: in a compiled
    kernel the three sums read what the update reads anyway, so they cost no extra pass.
    """
    acc = compute_dtype(p.dtype)
    p, new_p, g = p.to(acc), new_p.to(acc), g.to(acc)
    return torch.stack([(new_p - p).pow(2).sum(), p.pow(2).sum(), g.pow(2).sum()])


def apply_reference(
    rule: Rule,
    p: torch.Tensor,
    g: torch.Tensor,
    state: Mapping[str, Any],
    c: Mapping[str, Any],
    measure: bool = False,
) -> torch.Tensor | None:
    """One parameter, one step: the ground truth every fast path is tested against.

    With ``measure``, also returns :func:`update_stats` of the step (else None).
    """
    p_view, g_view = real(p), real(g)
    slots = {k: real(state[k]) for k in rule.slot_shapes(tuple(p.shape))}
    new_p, new_state = compute(rule, p_view, g_view, slots, c)
    stats = update_stats(p_view, new_p, g_view) if measure else None
    write_back(p_view, slots, new_p, new_state)
    return stats


def store_scalars(state: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    """Write a step's new scalar values into their 0-dim tensors, in their own dtype.

    A Python number goes through a tensor of the default dtype first, as torch.optim.ASGD
    stores ``eta.copy_(torch.as_tensor(...))``: a float64 ``eta`` (a checkpoint loaded onto
    float64 parameters casts it) then holds the same float32-rounded values as torch's.
    """
    for name, value in new.items():
        state[name].copy_(value if isinstance(value, torch.Tensor) else torch.as_tensor(value))


def begin_step(
    rule: Rule, hp: Mapping[str, float], step: int, state: Mapping[str, Any]
) -> dict[str, float]:
    """The coefficients of step ``step`` for one parameter whose rule keeps scalars
    (:meth:`Rule.begin_step`); its scalar tensors in ``state`` are advanced in place, as
    torch.optim advances ``mu_product`` or ``eta``."""
    c, new = rule.begin_step(hp, step, {k: state[k] for k in rule.scalar_names})
    store_scalars(state, new)
    return c
