"""The reference engine: the pure rule on one tensor at a time, written back in place."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..rules.base import Rule

LOW_PRECISION = (torch.float16, torch.bfloat16)


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
    """Evaluate the rule; 16-bit tensors are computed in float32 (eps=1e-8 is 0 in fp16)."""
    if p.dtype in LOW_PRECISION:
        return rule.update(p.float(), g.float(), {k: v.float() for k, v in slots.items()}, c)
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


def apply_reference(
    rule: Rule, p: torch.Tensor, g: torch.Tensor, state: Mapping[str, Any], c: Mapping[str, Any]
) -> None:
    """One parameter, one step: the ground truth every fast path is tested against."""
    p_view = real(p)
    slots = {k: real(state[k]) for k in rule.slots}
    write_back(p_view, slots, *compute(rule, p_view, real(g), slots, c))
