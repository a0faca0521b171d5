"""The machinery of ``descentlab reproduce``: claims split into statements, each with the
effect it claims (or criteria) written before the run, measurements, verdicts computed from
the measured figures alone, and the report.

A :class:`Claim` carries the seed's words, the experiment, and the :class:`Statement` s the
words make. A statement that claims an effect (:class:`EffectSpec`: which arms, what
quantity, the smallest effect that counts, signed so that a positive value favours the
claim) is judged on the per-seed effects the experiment measured, read by
:mod:`descentlab.evidence` (an estimate with a confidence interval over seeds):

* the interval lies at or above the smallest effect: **holds**;
* the interval lies below it (no effect, or the reverse, is measured): **does not hold**;
* the interval straddles it: **not resolved at this budget** (with the number of seeds that
  would likely resolve it; ``descentlab reproduce`` adds seeds up to the claim's cap first);
* a :class:`Condition` whose criteria hold on one side of a measured boundary and fail on
  the other turns "does not hold" or "not resolved" into **holds only <the condition>**;
* the statement's *required* criteria are then its preconditions: one that the workload does
  not meet gives **not tested: <why>**, never "does not hold".

A statement without an effect is decided by its criteria, as before: every required
criterion met holds (supporting ones are shown, never decide), a measured boundary gives
"holds only", otherwise "does not hold". A statement marked ``exact`` is algebra checked to
round-off (heavy-ball after an lr cut, Adam as momentum plus RMSProp): **exact, by
construction** when its criteria are met. Whatever the kind, a statement that reads a figure
the experiment flagged (a best lr at the edge of its grid) is **inconclusive**.

A criterion reads figures by name; a name the measurement lacks is an error (a bug in the
claim), never "not met".
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..evidence import NOT_HOLDS, Effect, estimate, exactly, outcome, seeds_to_resolve

HOLDS = "holds"
FAILS = "does not hold"
PARTLY = "holds only"  # rendered with its condition: "holds only for beta2 < 0.99"
INCONCLUSIVE = "inconclusive"
NOT_RESOLVED = "not resolved at this budget"
NOT_TESTED = "not tested"  # rendered with its reason: "not tested: <why>"
BY_CONSTRUCTION = "by construction"
EXACT = f"exact, {BY_CONSTRUCTION}"
VERDICTS = (HOLDS, PARTLY, FAILS, NOT_RESOLVED, NOT_TESTED, EXACT, INCONCLUSIVE)

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
class EffectSpec:
    """The effect a statement claims: ``samples`` names the per-seed effects the experiment
    measures (``Measurement.samples``), signed so that a positive value favours the claim;
    ``smallest`` is the smallest effect that counts, in the same units; ``text`` says which
    arms and what quantity ("SGD+momentum's test accuracy minus Adam's")."""

    samples: str
    smallest: float
    text: str
    unit: str = ""
    # nothing in the experiment is random (exact gradients, a fixed start): its one value
    # is the effect exactly (:func:`descentlab.evidence.exactly`), not a sample of it
    deterministic: bool = False


@dataclass(frozen=True)
class Statement:
    """One thing the seed says, with the effect it claims or the criteria that decide it."""

    key: str
    text: str
    criteria: tuple[Criterion, ...]
    condition: Condition | None = None
    effect: EffectSpec | None = None
    exact: bool = False  # algebra checked to round-off, not an empirical claim

    def figures(self) -> set[str]:
        names = {n for c in self.criteria for n in c.figures()}
        if self.condition:
            for c in (*self.condition.inside, *self.condition.outside):
                names.update(c.figures())
        return names


@dataclass(frozen=True)
class Judgement:
    verdict: str  # one of VERDICTS
    met: list[bool]
    detail: str = ""  # the condition of PARTLY, the reason of INCONCLUSIVE or NOT_TESTED
    effect: Effect | None = None  # the measured effect, for a statement that claims one

    @property
    def label(self) -> str:
        if self.verdict == PARTLY:
            return f"{self.verdict} {self.detail}"
        if self.verdict == NOT_TESTED:
            return f"{self.verdict}: {self.detail}"
        if self.verdict == FAILS and self.detail == BY_CONSTRUCTION:
            return f"{self.verdict}, {BY_CONSTRUCTION}"
        return self.verdict


def judge(
    statement: Statement,
    figures: Mapping[str, float],
    flags: Mapping[str, str] | None = None,
    samples: Mapping[str, Sequence[float]] | None = None,
) -> Judgement:
    """The verdict that follows from the figures, the per-seed effects (``samples``) and the
    experiment's flags."""
    met = [c.met(figures) for c in statement.criteria]
    flags = flags or {}
    spec = statement.effect
    # the figures a verdict rests on: the required criteria's, and with an effect every
    # criterion's (they describe the arms whose per-seed effect decides)
    read = {n for c in statement.criteria if c.required or spec for n in c.figures()}
    flagged = sorted(n for n in read if n in flags)
    effect = None
    if spec is not None:
        values = (samples or {}).get(spec.samples)
        if values is None:
            raise MissingFigure(
                f"statement {statement.key!r} reads the per-seed effect {spec.samples!r}, "
                "which was not measured"
            )
        if spec.deterministic:
            if len(set(values)) != 1:
                raise ValueError(
                    f"statement {statement.key!r}: a deterministic effect measured "
                    f"{len(set(values))} different values"
                )
            effect = exactly(values[0], spec.smallest)
        else:
            effect = estimate(values, spec.smallest)
        if spec.samples in flags:
            flagged.append(spec.samples)
    required = [(c, ok) for c, ok in zip(statement.criteria, met, strict=True) if c.required]
    unmet = [c.text for c, ok in required if not ok]
    if effect is not None and unmet:  # with an effect, required criteria are its setting
        return Judgement(NOT_TESTED, met, "; ".join(unmet), effect)
    if flagged:
        return Judgement(INCONCLUSIVE, met, "; ".join(flags[n] for n in sorted(flagged)), effect)
    if effect is not None:
        found = outcome(effect)
        if found == HOLDS:
            return Judgement(HOLDS, met, "", effect)
        if _boundary(statement.condition, figures):
            assert statement.condition is not None
            return Judgement(PARTLY, met, statement.condition.text, effect)
        if found == NOT_HOLDS:
            return Judgement(FAILS, met, "", effect)
        more = seeds_to_resolve(effect)
        hint = f"about {more} seeds would likely resolve it" if more else "too close to call"
        return Judgement(NOT_RESOLVED, met, hint, effect)
    if all(ok for _, ok in required):
        return Judgement(EXACT if statement.exact else HOLDS, met)
    if _boundary(statement.condition, figures):
        assert statement.condition is not None
        return Judgement(PARTLY, met, statement.condition.text)
    return Judgement(FAILS, met, BY_CONSTRUCTION if statement.exact else "")


def _boundary(cond: Condition | None, figures: Mapping[str, float]) -> bool:
    """Does ``cond`` hold on its side of the boundary and fail past it?"""
    return bool(
        cond
        and all(c.met(figures) for c in cond.inside)
        and not all(c.met(figures) for c in cond.outside)
    )


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
    # per-seed effects read by statements that claim one (their EffectSpec.samples)
    samples: dict[str, list[float]] = field(default_factory=dict)


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
    max_seeds: int = 10  # seeds the full run may add while an effect is not resolved

    def judge(
        self,
        figures: Mapping[str, float],
        flags: Mapping[str, str] | None = None,
        samples: Mapping[str, Sequence[float]] | None = None,
    ) -> list[Judgement]:
        return [judge(s, figures, flags, samples) for s in self.statements]


def summary(judgements: list[Judgement]) -> str:
    """One line for a claim: how many of its statements hold."""
    n = len(judgements)
    counts = {v: sum(j.verdict == v for j in judgements) for v in VERDICTS}
    if counts[HOLDS] == n:
        return "holds" if n == 1 else f"holds (all {n} statements)"
    if counts[FAILS] == n:
        return "does not hold" if n == 1 else f"does not hold (none of {n} statements)"
    parts = [
        f"{counts[v]} {w}"
        for v, w in (
            (HOLDS, "hold"),
            (EXACT, "exact by construction"),
            (PARTLY, "hold only under a condition"),
            (FAILS, "do not hold"),
            (NOT_RESOLVED, "not resolved at this budget"),
            (NOT_TESTED, "not tested"),
            (INCONCLUSIVE, "inconclusive"),
        )
        if counts[v]
    ]
    return f"{n} statements: " + ", ".join(parts)
