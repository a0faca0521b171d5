"""How evidence over seeds is read, defined once: an effect, its interval, and the outcome.

``descentlab reproduce`` (whether a statement of the seed holds) and the lab (whether one
optimizer beats another) both ask the same question of the same kind of data: per seed, a
measured effect, signed so that a positive value favours the claim. This module answers it.

* :func:`estimate` gives the mean effect and a two-sided Student-t confidence interval over
  the seeds (level 0.95 unless told; seeds are independent runs, so the per-seed effects are
  treated as an i.i.d. sample; with one seed the interval is unbounded; the quantile is
  scipy's);
* :func:`outcome` reads it against the smallest effect that counts (``smallest``, in the
  effect's units, signed like it): **holds** when the whole interval lies at or above it,
  **does not hold** when the whole interval lies below it (the effect is smaller than
  claimed: none, or the reverse), **not resolved** when the interval straddles it;
* :func:`seeds_to_resolve` says how many seeds would likely resolve an unresolved effect (the
  number at which the interval's half-width, at the same spread, would no longer reach
  ``smallest``).

Example:
    >>> e = estimate([0.9, 1.1, 1.0, 1.2, 0.8], smallest=0.2)
    >>> round(e.estimate, 3), e.seeds, outcome(e)
    (1.0, 5, 'holds')
    >>> outcome(estimate([-0.3, -0.1, -0.2], smallest=0.2))
    'does not hold'
    >>> e = estimate([0.9, 0.1, 0.8], smallest=0.2)
    >>> outcome(e), seeds_to_resolve(e)
    ('not resolved', 8)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "HOLDS",
    "LEVEL",
    "METHOD",
    "NOT_HOLDS",
    "NOT_RESOLVED",
    "Effect",
    "estimate",
    "exactly",
    "outcome",
    "seeds_to_resolve",
]

HOLDS = "holds"
NOT_HOLDS = "does not hold"
NOT_RESOLVED = "not resolved"
LEVEL = 0.95
METHOD = "t-interval over seeds"


@dataclass(frozen=True)
class Effect:
    """A measured effect over seeds, positive where it favours the claim."""

    estimate: float  # the mean over seeds
    low: float
    high: float
    level: float  # the confidence level of [low, high]
    smallest: float  # the smallest effect that counts, in the same units
    seeds: int
    method: str = METHOD

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self, unit: str = "", digits: int = 3) -> str:
        """``+0.96 [0.12, 1.80] (95%, 3 seeds; counts from +0.5)``."""

        def f(x: float) -> str:
            return "inf" if math.isinf(x) else f"{x:+.{digits}g}{unit}"

        if self.method == DETERMINISTIC:
            return f"{f(self.estimate)} (deterministic, exact; counts from {f(self.smallest)})"
        return (
            f"{f(self.estimate)} [{f(self.low)}, {f(self.high)}] "
            f"({self.level:.0%}, {self.seeds} seeds; counts from {f(self.smallest)})"
        )


def estimate(values: Sequence[float], smallest: float, level: float = LEVEL) -> Effect:
    """The mean of the per-seed ``values`` and its two-sided t-interval at ``level``. A
    non-finite value (a diverged run) makes the interval unbounded on its side."""
    if not values:
        raise ValueError("estimate: no seeds")
    if not 0 < level < 1:
        raise ValueError(f"estimate: level must be in (0, 1), got {level}")
    xs = [float(v) for v in values]
    n = len(xs)
    if not all(math.isfinite(x) for x in xs):
        mean = sum(xs) / n if not any(math.isnan(x) for x in xs) else math.nan
        low = -math.inf if any(x == -math.inf or math.isnan(x) for x in xs) else min(xs)
        high = math.inf if any(x == math.inf or math.isnan(x) for x in xs) else max(xs)
        return Effect(mean, low, high, level, smallest, n)
    mean = math.fsum(xs) / n
    if n == 1:
        return Effect(mean, -math.inf, math.inf, level, smallest, n)
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return Effect(mean, mean - half, mean + half, level, smallest, n)


DETERMINISTIC = "deterministic: one run, nothing random"


def exactly(value: float, smallest: float) -> Effect:
    """The effect of an experiment in which nothing is random (exact gradients, a fixed
    start): one run measures it exactly, so its interval is the point itself."""
    v = float(value)
    return Effect(v, v, v, 1.0, smallest, 1, DETERMINISTIC)


def outcome(effect: Effect) -> str:
    """``HOLDS``, ``NOT_HOLDS`` or ``NOT_RESOLVED``: where the interval lies against the
    smallest effect that counts."""
    if effect.low >= effect.smallest:
        return HOLDS
    if effect.high < effect.smallest:
        return NOT_HOLDS
    return NOT_RESOLVED


def seeds_to_resolve(effect: Effect, cap: int = 1000) -> int | None:
    """About how many seeds would resolve an unresolved ``effect`` at its measured spread
    (``None``: the estimate sits on ``smallest``, or the spread is unknown)."""
    gap = abs(effect.estimate - effect.smallest)
    if effect.seeds < 2 or not math.isfinite(effect.high - effect.low) or gap == 0:
        return None
    t = t_quantile(0.5 + effect.level / 2, effect.seeds - 1)
    sd = (effect.high - effect.low) / 2 / t * math.sqrt(effect.seeds)
    n = effect.seeds
    while n < cap:
        n += 1
        if t_quantile(0.5 + effect.level / 2, n - 1) * sd / math.sqrt(n) < gap:
            return n
    return None


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (scipy's)."""
    from scipy.stats import t

    return float(t.ppf(p, df))
