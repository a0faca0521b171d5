"""The machinery of ``descentlab reproduce``: claims split into statements, criteria with a
direction and a margin written before the run, measurements, verdicts computed from the
measured figures alone, and the report.

A :class:`Claim` carries the seed's words, the experiment, and the :class:`Statement` s the
words make. Each statement has its own verdict, derived from its criteria:

* every *required* criterion met: **holds** (*supporting* criteria are reported beside it
  and never decide);
* otherwise, if the statement names a :class:`Condition` (a measured boundary such as
  "for beta2 < 0.99") whose criteria hold on one side and fail on the other: **holds only
  <the condition>**;
* otherwise: **does not hold**;
* **inconclusive** instead, whatever the criteria say, when a figure a required criterion
  reads was flagged by the experiment (a best lr at the edge of its grid, say).

A criterion reads figures by name; a name the measurement lacks is an error (a bug in the
claim), never "not met".
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

HOLDS = "holds"
FAILS = "does not hold"
PARTLY = "holds only"  # rendered with its condition: "holds only for beta2 < 0.99"
INCONCLUSIVE = "inconclusive"

Figures = dict[str, float]

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class MissingFigure(KeyError):
    """A criterion names a figure the measurement does not have: a bug in the claim."""


@dataclass(frozen=True)
class Criterion:
    """``left op factor * right + offset``: which side must win, and by what margin.

    ``left`` names a figure; ``right`` names another (a comparison between two arms) or is
    a number (a threshold). ``factor`` and ``offset`` are the margin: ``("A", "<", "B",
    0.5)`` reads "A is below half of B", ``("A", ">=", "B", offset=0.1)`` "A is at least
    0.1 above B". ``required`` criteria decide the verdict; supporting ones are shown.
    """

    text: str
    left: str
    op: str
    right: str | float
    factor: float = 1.0
    offset: float = 0.0
    required: bool = True

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"criterion {self.text!r}: op must be one of {', '.join(_OPS)}")

    @property
    def comparative(self) -> bool:
        """Does it compare two measured arms (rather than one figure with a number)?"""
        return isinstance(self.right, str)

    def figures(self) -> tuple[str, ...]:
        return (self.left, self.right) if isinstance(self.right, str) else (self.left,)

    def met(self, figures: Mapping[str, float]) -> bool:
        for name in self.figures():
            if name not in figures:
                raise MissingFigure(
                    f"criterion {self.text!r} reads {name!r}, which was not measured"
                )
        a = float(figures[self.left])
        b = float(figures[self.right]) if isinstance(self.right, str) else float(self.right)
        if math.isnan(a) or math.isnan(b):
            return False  # a failed measurement (a diverged run) supports nothing
        return _OPS[self.op](a, self.factor * b + self.offset)


def require(
    text: str, left: str, op: str, right: str | float, factor: float = 1.0, offset: float = 0.0
) -> Criterion:
    """A criterion that decides the verdict."""
    return Criterion(text, left, op, right, factor, offset, required=True)


def support(
    text: str, left: str, op: str, right: str | float, factor: float = 1.0, offset: float = 0.0
) -> Criterion:
    """A criterion reported beside the verdict, never deciding it."""
    return Criterion(text, left, op, right, factor, offset, required=False)


@dataclass(frozen=True)
class Condition:
    """A measured boundary: ``inside`` criteria hold where the condition is true and
    ``outside`` criteria (the same test past the boundary) fail."""

    text: str  # "for beta2 < 0.99"
    inside: tuple[Criterion, ...]
    outside: tuple[Criterion, ...]


@dataclass(frozen=True)
class Statement:
    """One thing the seed says, with the criteria that decide it."""

    key: str
    text: str
    criteria: tuple[Criterion, ...]
    condition: Condition | None = None

    def figures(self) -> set[str]:
        names = {n for c in self.criteria for n in c.figures()}
        if self.condition:
            for c in (*self.condition.inside, *self.condition.outside):
                names.update(c.figures())
        return names


@dataclass(frozen=True)
class Judgement:
    verdict: str  # HOLDS, FAILS, PARTLY or INCONCLUSIVE
    met: list[bool]
    detail: str = ""  # the condition of PARTLY, the reason of INCONCLUSIVE

    @property
    def label(self) -> str:
        return f"{self.verdict} {self.detail}" if self.verdict == PARTLY else self.verdict


def judge(
    statement: Statement, figures: Mapping[str, float], flags: Mapping[str, str] | None = None
) -> Judgement:
    """The verdict that follows from the figures (and the experiment's flags)."""
    met = [c.met(figures) for c in statement.criteria]
    flags = flags or {}
    read = {n for c in statement.criteria if c.required for n in c.figures()}
    flagged = sorted(n for n in read if n in flags)
    if flagged:
        return Judgement(INCONCLUSIVE, met, "; ".join(flags[n] for n in flagged))
    required = [ok for c, ok in zip(statement.criteria, met, strict=True) if c.required]
    if all(required):
        return Judgement(HOLDS, met)
    cond = statement.condition
    if (
        cond
        and all(c.met(figures) for c in cond.inside)
        and not all(c.met(figures) for c in cond.outside)
    ):
        return Judgement(PARTLY, met, cond.text)
    return Judgement(FAILS, met)


@dataclass
class Measurement:
    """What an experiment produced: named figures, plots, optional table and remarks.

    ``flags`` maps a figure to the reason it cannot carry a verdict (a best value at the
    edge of its grid after widening, say): statements that require it are inconclusive.
    """

    figures: Figures
    plots: list[tuple[str, Path]] = field(default_factory=list)
    table: tuple[list[str], list[list[str]]] | None = None
    remarks: list[str] = field(default_factory=list)
    flags: dict[str, str] = field(default_factory=dict)


@dataclass
class Context:
    """Where an experiment writes its plots, and how much compute it may spend."""

    folder: Path
    quick: bool
    seeds: int

    def plot_path(self, name: str) -> Path:
        path = self.folder / "plots" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


@dataclass(frozen=True)
class Claim:
    key: str
    title: str
    quote: str
    experiment: str
    statements: tuple[Statement, ...]
    measure: Callable[[Context], Measurement]

    def judge(
        self, figures: Mapping[str, float], flags: Mapping[str, str] | None = None
    ) -> list[Judgement]:
        return [judge(s, figures, flags) for s in self.statements]


def summary(judgements: list[Judgement]) -> str:
    """One line for a claim: how many of its statements hold."""
    n = len(judgements)
    counts = {
        v: sum(j.verdict == v for j in judgements) for v in (HOLDS, PARTLY, FAILS, INCONCLUSIVE)
    }
    if counts[HOLDS] == n:
        return "holds" if n == 1 else f"holds (all {n} statements)"
    if counts[FAILS] == n:
        return "does not hold" if n == 1 else f"does not hold (none of {n} statements)"
    parts = [
        f"{counts[v]} {w}"
        for v, w in (
            (HOLDS, "hold"),
            (PARTLY, "hold only under a condition"),
            (FAILS, "do not hold"),
            (INCONCLUSIVE, "inconclusive"),
        )
        if counts[v]
    ]
    return f"{n} statements: " + ", ".join(parts)
