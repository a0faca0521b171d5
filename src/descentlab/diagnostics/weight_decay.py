"""Which parameters decay: weight matrices and kernels yes, biases and normalization no.

One rule, read by :func:`~descentlab.diagnostics.guards.guard` (its
``decay_on_bias_or_norm`` finding), by the lab's runs (their two param groups) and by users
(:func:`param_groups_for_decay`), so the warning and the fix it recommends cannot disagree.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["decay_split", "norm_params", "param_groups_for_decay"]

_NORMS: tuple[type[nn.Module], ...] = tuple(
    cls
    for cls in (
        nn.modules.batchnorm._NormBase,
        nn.LayerNorm,
        nn.GroupNorm,
        nn.LocalResponseNorm,
        getattr(nn, "RMSNorm", None),
    )
    if isinstance(cls, type)
)


def param_groups_for_decay(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """The usual two param groups: decay for weight matrices and kernels, none for the rest.

    Parameters with 2 or more dimensions decay (Linear and Conv weights, embeddings), except
    those of normalization layers; biases, other 1-D parameters and normalization weights get
    ``weight_decay=0``. Empty groups are left out.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
        >>> groups = param_groups_for_decay(model, 0.1)
        >>> [(len(g["params"]), g["weight_decay"]) for g in groups]
        [(1, 0.1), (3, 0.0)]
        >>> opt = torch.optim.AdamW(groups, lr=1e-3)
    """
    decay, no_decay = decay_split(list(model.parameters()), norm_params(model))
    groups = [
        {"params": decay, "weight_decay": float(weight_decay)},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]


def decay_split(
    params: list[torch.Tensor], norm_params: set[int] | frozenset[int] = frozenset()
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(decayed, not decayed): weight matrices and kernels decay; normalization weights
    (``norm_params``: ids) never do, nor do 1-D tensors (biases) beside weight matrices. 1-D
    tensors alone are what is being optimized (a point on a 2-D landscape) and decay."""
    matrices = any(p.dim() >= 2 for p in params)
    decay: list[torch.Tensor] = []
    no_decay: list[torch.Tensor] = []
    for p in params:
        skip = id(p) in norm_params or (matrices and p.dim() <= 1)
        (no_decay if skip else decay).append(p)
    return decay, no_decay


def norm_params(model: nn.Module) -> set[int]:
    """The ids of the parameters of normalization layers (only the model tells: a norm
    weight may have any shape)."""
    return {id(p) for m in model.modules() if isinstance(m, _NORMS) for p in m.parameters(False)}
