"""The report's decisions: each optimizer's best lr, and which optimizer wins.

The one rule for choosing a best lr is :func:`lowest` (also used by
:mod:`descentlab.reproduce`); :func:`choices` applies it to a sweep's summary with the lab's
tie rule. How the report decides (the rules are also printed at the top of every report):

* **Numerical floor.** Training losses that differ by no more than
  ``REL_FLOOR * max(|start loss|, 1)`` (the workload's mean loss at step 0) are equal:
  such differences are floating-point round-off. The floor applies when choosing each
  optimizer's best learning rate, when naming a winner, and as the lower limit of the
  loss axes (values below it are drawn at it).
* **Best learning rate.** Per (workload, optimizer, regime): the lr with the lowest mean
  final training loss among lrs where no seed diverged (any lr if every one had a
  diverging seed). Lrs within the floor of that minimum are tied; among them the one
  that reaches the target on the most seeds, then in the fewest steps, wins.
* **Winner.** Per metric, the optimizer with the best mean wins only when its effect
  against every other optimizer *holds* as :mod:`descentlab.evidence` reads effects (the
  one rule shared with ``reproduce``): per seed, the difference of the two runs of that seed
  (a seed fixes the initial weights and the data order, whatever the optimizer), and its
  95% t-interval over seeds lying wholly beyond the metric's resolution (the floor for
  losses, one evaluation interval for steps to target, zero for accuracy). Otherwise the
  comparison is not resolved: "no clear winner", with the interval, among the best and the
  rivals it does not beat so. A winner also needs every rival tuned (a bracketed best lr).
"""

from __future__ import annotations

import math
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ..evidence import HOLDS, LEVEL, NOT_HOLDS, Effect, estimate, outcome
from .summary import Key, Row, finite, mean_std

REL_FLOOR = 1e-12
"""Loss differences below ``REL_FLOOR * max(|start loss|, 1)`` are round-off (ties)."""

_C = TypeVar("_C", bound=Hashable)


def lowest(
    scores: Mapping[_C, float],
    *,
    within: float = 0.0,
    rank: Callable[[_C], Any] | None = None,
) -> tuple[_C, list[_C]] | None:
    """The candidate with the lowest score, and those tied with it; None when there are none.

    The one rule of "the best lr" in descentlab: the lab's report calls it through
    :func:`choices`, the experiments of ``reproduce`` directly. A score that is not finite
    (NaN, an infinity) counts as +infinity: it loses. Candidates whose score is at most
    ``within`` above the lowest are tied with it; among the tied, the one with the smallest
    ``rank(candidate)`` wins (by default the lowest score), the first given on equal ranks.

    The tie rule is a parameter because the two callers differ on purpose: the lab ties
    losses closer than its round-off floor and breaks the tie by ``rank`` (steps to target),
    while ``reproduce`` scores by metrics of its own and keeps ``within=0``: the strictly
    lowest score, the first on exact equality, which keeps every figure it has published.

    >>> lowest({0.1: 2.0, 0.3: 1.0, 1.0: float("nan")})
    (0.3, [0.3])
    >>> lowest({0.1: 1.0, 0.3: 1.0 + 1e-15}, within=1e-12, rank=lambda lr: -lr)
    (0.3, [0.1, 0.3])
    """
    if not scores:
        return None

    def score(c: _C) -> float:
        value = scores[c]
        return value if math.isfinite(value) else math.inf

    low = min(score(c) for c in scores)
    tied = [c for c in scores if score(c) <= low + within]
    best = min(tied, key=rank if rank is not None else score)
    return best, tied


def loss_floor(summary: list[Row], workload: str) -> float:
    """The workload's round-off floor: REL_FLOOR * max(|mean start loss|, 1)."""
    starts = finite(s.get("start_loss") for s in summary if s["workload"] == workload)
    scale = max(abs(statistics.fmean(starts)), 1.0) if starts else 1.0
    return REL_FLOOR * scale


@dataclass
class Choice:
    """An optimizer's best lr in one (workload, regime), and the lrs tied with it."""

    line: Row
    tied: list[float]
    grid: list[float]


def choices(summary: list[Row]) -> dict[Key, Choice]:
    """Per (workload, optimizer, regime): the best lr under the floor rule (module doc)."""
    groups: dict[Key, list[Row]] = defaultdict(list)
    for line in summary:
        groups[(line["workload"], line["optimizer"], line["regime"])].append(line)
    floors = {w: loss_floor(summary, w) for w in {s["workload"] for s in summary}}
    out: dict[Key, Choice] = {}
    for key, lines in groups.items():
        choice = _choice(lines, floors[key[0]])
        if choice is not None:
            out[key] = choice
    return out


def _choice(lines: list[Row], floor: float) -> Choice | None:
    """One (workload, optimizer, regime)'s best lr among its summary ``lines`` (one per lr)."""
    ran = [s for s in lines if s["diverged"] < s["seeds"] and math.isfinite(s["final_loss"][0])]
    clean = [s for s in ran if s["diverged"] == 0] or ran
    picked = lowest(
        {i: s["final_loss"][0] for i, s in enumerate(clean)},
        within=floor,
        rank=lambda i: _rank(clean[i]),
    )
    if picked is None:
        return None
    best, tied = picked
    return Choice(clean[best], sorted(clean[i]["lr"] for i in tied), sorted(s["lr"] for s in lines))


def _rank(line: Row) -> tuple[float, float, float]:
    """The lab's tie-break among tied lrs: more seeds reaching the target, then fewer steps
    to it, then the lower mean final loss."""
    steps = line.get("steps_to_target")
    return (
        -line.get("reached", 0),
        steps if steps is not None else math.inf,
        line["final_loss"][0],
    )


def best_lrs(summary: list[Row]) -> dict[Key, float]:
    """Per (workload, optimizer, regime): the best lr (lowest mean final loss, floor ties)."""
    return {k: c.line["lr"] for k, c in choices(summary).items()}


def grid_edge(choice: Choice) -> str | None:
    """ "smallest"/"largest" when the best lr, alone (no tied lr), sits at the grid's end."""
    grid, tied = choice.grid, choice.tied
    if len(grid) < 3 or len(tied) != 1:
        return None
    if tied[0] == grid[0]:
        return "smallest"
    return "largest" if tied[0] == grid[-1] else None


def unbracketed(choice: Choice) -> str | None:
    """Why a best lr does not show its optimizer tuned, or None when the grid brackets it:
    ``"untuned"`` (one lr tried), ``"smallest"``/``"largest"`` when the best lr and every lr
    tied with it sit at the ends of the grid (any grid size): the optimum may lie beyond."""
    grid = sorted(choice.grid)
    if len(grid) == 1:
        return "untuned"
    ends = {grid[0], grid[-1]}
    if not all(lr in ends for lr in choice.tied):
        return None
    return "smallest" if choice.line["lr"] == grid[0] else "largest"


def _unbracketed_text(optimizer: str, why: str) -> str:
    if why == "untuned":
        return f"{optimizer} is untuned (one lr tried)"
    return f"{optimizer}'s best lr is the {why} tried"


def _suggest(lr: float, side: str) -> str:
    """Two lrs half a decade apart beyond ``lr`` on ``side`` (both sides when untuned)."""
    up = [f"{lr * 10**0.5:.2g}", f"{lr * 10:.2g}"]
    down = [f"{lr / 10**0.5:.2g}", f"{lr / 10:.2g}"]
    picked = {"largest": up, "smallest": down}.get(side, [down[0], up[0]])
    return ", ".join(picked)


def grid_edge_notes(summary: list[Row]) -> list[str]:
    """Warn where an optimizer's best lr is not bracketed by its grid (see
    :func:`unbracketed`): the optimum may lie beyond it; say which lrs to add. Also say when
    the optimizers of one comparison had different tuning budgets (lrs x seeds)."""
    notes = []
    picked = choices(summary)
    for (workload, optimizer, regime), choice in sorted(picked.items()):
        why = unbracketed(choice)
        if why:
            lr = choice.line["lr"]
            what = (
                f"only lr {lr:g} was tried (untuned)"
                if why == "untuned"
                else f"the best lr {lr:g} is the {why} tried"
            )
            notes.append(
                f"{workload} [{regime}] {optimizer}: {what}; a wider grid may do better "
                f"(add {_suggest(lr, why)})."
            )
    budgets: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for (workload, optimizer, regime), choice in sorted(picked.items()):
        seeds = choice.line["seeds"]
        budgets[(workload, regime)][optimizer] = f"{len(choice.grid)} lrs x {seeds} seeds"
    for (workload, regime), per in sorted(budgets.items()):
        if len(set(per.values())) > 1:
            listed = ", ".join(f"{o} {b}" for o, b in per.items())
            notes.append(f"{workload} [{regime}]: tuning budgets differ: {listed}.")
    return notes


def _not_over_unbracketed(v: Verdict, edges: dict[str, str]) -> Verdict:
    """A winner beats every rival, so it needs every rival tuned: when one it would beat has
    an unbracketed best lr, the comparison is not resolved (its own edge does not matter)."""
    if v.winner is None:
        return v
    rivals = sorted(o for o in edges if o != v.winner)
    if not rivals or v.text.startswith("only "):
        return v
    why = "; ".join(_unbracketed_text(o, edges[o]) for o in rivals)
    figures = v.text.split(": ", 1)[1].rstrip(".")
    return Verdict(v.metric, None, v.leaders, f"not resolved: {why} ({figures}).")


def row_notes(summary: list[Row]) -> dict[tuple[str, str, str, float], list[str]]:
    """Short notes for the table rows they concern, keyed by (workload, optimizer, regime, lr)."""
    notes: dict[tuple[str, str, str, float], list[str]] = defaultdict(list)
    for (workload, optimizer, regime), choice in choices(summary).items():
        lr = choice.line["lr"]
        side = grid_edge(choice)
        if side:
            notes[(workload, optimizer, regime, lr)].append(
                f"best lr is the {side} tried: a wider grid may do better"
            )
        if len(choice.tied) > 1:
            others = ", ".join(f"{x:g}" for x in choice.tied if x != lr)
            notes[(workload, optimizer, regime, lr)].append(
                f"tied within the floor with lr {others}"
            )
    for s in summary:
        if s["diverged"] > 0:
            notes[(s["workload"], s["optimizer"], s["regime"], s["lr"])].append(
                f"{s['diverged']} of {s['seeds']} seeds diverged"
            )
    return dict(notes)


# ---------------------------------------------------------------- headline


@dataclass
class Verdict:
    """One headline line: which optimizer wins on one metric, if any clearly does."""

    metric: str
    winner: str | None  # None: no clear winner (or nothing to compare)
    leaders: list[str]  # the winner, or those whose intervals overlap the best one's
    text: str


def _ms(mean: float, std: float, digits: int = 3) -> str:
    return f"{mean:.{digits}g} ± {std:.2g}"


def _by_seed(line: Row, key: str) -> dict[int, float]:
    """``line``'s per-seed values of ``key`` (``final_loss_runs``...), NaN where missing."""
    values = line.get(key) or []
    return {
        int(seed): math.nan if v is None else float(v)
        for seed, v in zip(line.get("seed_ids") or [], values, strict=False)
    }


def paired_effect(
    best: Mapping[int, float],
    rival: Mapping[int, float],
    lower_is_better: bool,
    resolution: float,
) -> Effect:
    """How much ``best`` beats ``rival``, seed by seed: a seed fixes the initial weights and
    the data order whatever the optimizer, so the two runs of one seed are a pair, and the
    per-seed differences (signed: positive where ``best`` is better) are read by
    :mod:`descentlab.evidence`, as ``reproduce`` reads its effects. A seed where only the
    rival's run is missing (it diverged) counts fully for ``best``; one where ``best``'s is,
    fully against it. ``resolution`` is the smallest difference that counts (the round-off
    floor, one evaluation interval), and always above zero."""
    smallest = max(resolution, sys.float_info.min)
    diffs = []
    for seed in sorted(set(best) & set(rival)):
        a, b = best[seed], rival[seed]
        if math.isnan(a) or math.isnan(b):
            diffs.append(-math.inf if math.isnan(a) else math.inf)
        else:
            diffs.append(b - a if lower_is_better else a - b)
    if not diffs:  # no seed in common: nothing paired, nothing resolved
        return Effect(math.nan, -math.inf, math.inf, LEVEL, smallest, 0)
    return estimate(diffs, smallest)


def verdict(
    metric: str,
    values: dict[str, tuple[float, float]],
    lower_is_better: bool,
    resolution: float,
    digits: int = 3,
    per_seed: dict[str, dict[int, float]] | None = None,
) -> Verdict:
    """Winner on one metric: each optimizer's (mean, std) over seeds are shown, its
    per-seed values (``per_seed``) decide.

    The optimizer with the best mean wins only when, against every other one, the paired
    effect (:func:`paired_effect`) *holds*: its 95% interval over seeds lies beyond
    ``resolution``. A rival it does not beat so (the interval reaches the resolution: not
    resolved, or the two are equal within it) joins the leaders, and there is no clear winner.
    """
    items = sorted(
        ((o, m, s) for o, (m, s) in values.items() if math.isfinite(m)),
        key=lambda t: (t[1] if lower_is_better else -t[1], t[0]),
    )
    if not items:
        return Verdict(metric, None, [], "nothing to compare.")
    best = items[0][0]
    seeds = per_seed or {}
    effects = {
        o: paired_effect(seeds.get(best, {}), seeds.get(o, {}), lower_is_better, resolution)
        for o, _, _ in items[1:]
    }
    leaders = [best] + [o for o, _, _ in items[1:] if outcome(effects[o]) != HOLDS]
    tied = [o for o in leaders[1:] if outcome(effects[o]) == NOT_HOLDS]  # within resolution
    open_ = [o for o in leaders[1:] if o not in tied]

    def show(o: str) -> str:
        m, s = values[o]
        return f"{o} {_ms(m, s, digits)}"

    def gap(o: str) -> str:
        e = effects[o]
        if e.seeds < 2:
            return f"{o}: {e.seeds} paired seed{'s' * (e.seeds != 1)}, no interval"
        word = "worse" if lower_is_better else "lower"
        low, high = _signed(e.low, digits), _signed(e.high, digits)
        return f"{o} {_signed(e.estimate, digits)} {word} [{low}, {high}]"

    rest = [o for o, _, _ in items if o not in leaders]
    tail = f"; then {', '.join(show(o) for o in rest)}" if rest else ""
    n = max((e.seeds for e in effects.values()), default=0)
    how = f"{LEVEL:.0%} t-interval over {n} paired seeds"
    if len(items) == 1:
        return Verdict(metric, best, [best], f"only {show(best)}.")
    if len(leaders) == 1:
        gaps = ", ".join(gap(o) for o in rest)
        return Verdict(metric, best, leaders, f"{best} wins: {show(best)}{tail} ({gaps}; {how}).")
    why = []
    if open_:
        why.append(f"not resolved against {best}: {', '.join(gap(o) for o in open_)}; {how}")
    if tied:
        why.append(f"within {resolution:.2g} of {best}: {', '.join(tied)}")
    return Verdict(
        metric,
        None,
        leaders,
        f"no clear winner: {', '.join(show(o) for o in leaders)} overlap{tail} ({'; '.join(why)}).",
    )


def _signed(x: float, digits: int) -> str:
    return "inf" if math.isinf(x) else f"{x:+.{digits}g}"


def headline(summary: list[Row], workload: str, regime: str) -> list[Verdict]:
    """The conclusions for one (workload, regime), each optimizer at its best lr."""
    picked = {k[1]: c for k, c in choices(summary).items() if k[0] == workload and k[2] == regime}
    best = {o: c.line for o, c in picked.items()}
    if not best:
        return []
    edges = {o: why for o, c in picked.items() if (why := unbracketed(c))}
    floor = loss_floor(summary, workload)
    loss = verdict(
        "final training loss",
        {o: (s["final_loss"][0], s["final_loss"][1]) for o, s in best.items()},
        True,
        floor,
        per_seed={o: _by_seed(s, "final_loss_runs") for o, s in best.items()},
    )
    means = [best[o]["final_loss"][0] for o in loss.leaders]
    if len(loss.leaders) > 1 and max(means) - min(means) <= floor:
        loss.text = loss.text.replace(" overlap", f" tie (within the round-off floor {floor:.2g})")
    out = [loss]
    if any("final_acc" in s for s in best.values()):
        out.append(
            verdict(
                "held-out accuracy",
                {
                    o: (s["final_acc"][0], s["final_acc"][1])
                    for o, s in best.items()
                    if "final_acc" in s
                },
                False,
                0.0,
                per_seed={o: _by_seed(s, "final_acc_runs") for o, s in best.items()},
            )
        )
    with_target = [s for s in best.values() if s.get("target") is not None]
    if with_target:
        everyone = {
            o: mean_std([float(x) for x in s.get("steps_to_target_runs", [])])
            for o, s in best.items()
            if s.get("target") is not None and s["reached"] == s["seeds"]
        }
        missed = [
            f"{o} ({s['reached']}/{s['seeds']} seeds)"
            for o, s in sorted(best.items())
            if s.get("target") is not None and s["reached"] < s["seeds"]
        ]
        metric = "steps to target"
        if everyone:
            v = verdict(
                metric,
                everyone,
                True,
                float(with_target[0]["eval_every"]),
                digits=4,
                per_seed={o: _by_seed(best[o], "steps_to_target_by_seed") for o in everyone},
            )
        else:
            v = Verdict(metric, None, [], "no optimizer reached the target on every seed.")
        if missed and everyone:
            v.text = v.text[:-1] + f"; not reached on every seed: {', '.join(missed)}."
        out.append(v)
    return [_not_over_unbracketed(v, edges) for v in out]
