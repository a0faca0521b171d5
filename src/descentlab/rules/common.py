"""Transforms every family shares: the sign flip of ``maximize``, weight decay in its two
placements, and the learning-rate step. :func:`chain` assembles a family's core transforms
between them in the order torch.optim applies them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from .base import Array, Coefficients, Rule, Transform

WeightDecay = Literal["l2", "decoupled"] | None


@dataclass(frozen=True)
class FlipSign(Transform):
    """``u = -g``: ascend instead of descend (torch's ``maximize=True``)."""

    def __call__(self, u: Array, p: Array, state: Mapping[str, Array], c: Coefficients):
        return -u, {}


@dataclass(frozen=True)
class AddL2(Transform):
    """L2 regularisation: ``u = g + weight_decay * p``, folded into the gradient.

    Everything after it (momentum, the adaptive scaling of Adam) sees the decay term, which
    is what ``torch.optim.Adam(weight_decay=...)`` does and what AdamW was made to avoid.
    """

    def coefficients(self, hp: Mapping[str, float], step: int) -> dict[str, float]:
        return {"weight_decay": hp["weight_decay"]}

    def __call__(self, u: Array, p: Array, state: Mapping[str, Array], c: Coefficients):
        return c["weight_decay"] * p + u, {}  # dense + u: u may be a sparse gradient


@dataclass(frozen=True)
class ScaleByLR(Transform):
    """The step itself: ``u = -lr * u``."""

    def coefficients(self, hp: Mapping[str, float], step: int) -> dict[str, float]:
        return {"lr": hp["lr"]}

    def __call__(self, u: Array, p: Array, state: Mapping[str, Array], c: Coefficients):
        return -c["lr"] * u, {}


@dataclass(frozen=True)
class DecoupledDecay(Transform):
    """Decoupled weight decay (Loshchilov & Hutter): ``u = u - lr * weight_decay * p``.

    Placed after the learning-rate step, so the adaptive scaling never sees it. The decay is
    multiplied by ``lr`` as torch.optim.AdamW does (the paper's schedule multiplier).
    """

    def coefficients(self, hp: Mapping[str, float], step: int) -> dict[str, float]:
        return {"lr_wd": hp["lr"] * hp["weight_decay"]}

    def __call__(self, u: Array, p: Array, state: Mapping[str, Array], c: Coefficients):
        return u - c["lr_wd"] * p, {}


def chain(
    name: str,
    core: tuple[Transform, ...],
    *,
    weight_decay: WeightDecay = None,
    maximize: bool = False,
    step: Transform | None = None,
) -> Rule:
    """``[maximize] -> [L2] -> core -> lr step -> [decoupled decay]``, torch.optim's order.

    ``step`` replaces the learning-rate step :class:`ScaleByLR` where a family scales by
    something else (Adagrad's decayed ``lr``).
    """
    if weight_decay not in ("l2", "decoupled", None):
        raise ValueError(f"weight_decay must be 'l2', 'decoupled' or None, got {weight_decay!r}")
    head: list[Transform] = [FlipSign()] if maximize else []
    if weight_decay == "l2":
        head.append(AddL2())
    tail: list[Transform] = [ScaleByLR() if step is None else step]
    if weight_decay == "decoupled":
        tail.append(DecoupledDecay())
    return Rule(name, (*head, *core, *tail))
