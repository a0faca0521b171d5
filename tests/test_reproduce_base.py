"""The verdict rules of ``descentlab reproduce`` (``reproduce/base.py``): how criteria decide a
statement, and how a claim's statements add up to its one-line summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from descentlab.reproduce.base import (
    EXACT,
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    NOT_RESOLVED,
    NOT_TESTED,
    PARTLY,
    Claim,
    Condition,
    Context,
    EffectSpec,
    Judgement,
    Measurement,
    MissingFigure,
    Statement,
    judge,
    require,
    summary,
)
from descentlab.reproduce.base import support as supporting

ARMS = (require("A below B", "A", "<", "B"),)


def test_a_statement_holds_when_every_required_criterion_holds() -> None:
    st = Statement("s", "A beats B", (*ARMS, supporting("C high", "C", ">", 1)))
    assert judge(st, {"A": 1, "B": 2, "C": 0}).verdict == HOLDS  # supporting never decides
    assert judge(st, {"A": 3, "B": 2, "C": 5}).verdict == FAILS
    assert judge(st, {"A": float("nan"), "B": 2, "C": 5}).verdict == FAILS
    margin = Statement("m", "A beats B by 10%", (require("t", "A", "<", "B", 0.9),))
    assert judge(margin, {"A": 1.85, "B": 2}).verdict == FAILS  # not by the margin
    offset = Statement("o", "A at least 0.1 above B", (require("t", "A", ">=", "B", offset=0.1),))
    assert judge(offset, {"A": 0.85, "B": 0.8}).verdict == FAILS
    assert judge(offset, {"A": 0.95, "B": 0.8}).verdict == HOLDS


def test_a_missing_figure_is_an_error_never_not_met() -> None:
    st = Statement("s", "A beats B", ARMS)
    with pytest.raises(MissingFigure, match="'B'"):
        judge(st, {"A": 1, "Bee": 2})


def test_holds_only_names_a_measured_boundary() -> None:
    st = Statement(
        "s",
        "small at beta 0.999",
        (require("small at 0.999", "r999", "<", 0.5),),
        Condition(
            "for beta <= 0.95",
            inside=(require("small at 0.95", "r95", "<", 0.5),),
            outside=(require("small at 0.97", "r97", "<", 0.5),),
        ),
    )
    j = judge(st, {"r999": 3.0, "r95": 0.4, "r97": 0.6})
    assert (j.verdict, j.label) == (PARTLY, "holds only for beta <= 0.95")
    assert judge(st, {"r999": 3.0, "r95": 0.4, "r97": 0.4}).verdict == FAILS  # no boundary
    assert judge(st, {"r999": 3.0, "r95": 0.6, "r97": 0.6}).verdict == FAILS
    assert judge(st, {"r999": 0.1, "r95": 0.4, "r97": 0.6}).verdict == HOLDS


def test_a_flagged_figure_makes_its_statement_inconclusive() -> None:
    st = Statement("s", "A beats B", ARMS)
    j = judge(st, {"A": 1, "B": 2}, {"A": "its best lr is at the edge of the grid"})
    assert j.verdict == INCONCLUSIVE and "edge" in j.detail
    # evidence that cannot carry a verdict is not evidence against the statement either
    against = judge(st, {"A": 3, "B": 2}, {"B": "its best lr is at the edge of the grid"})
    assert against.verdict == INCONCLUSIVE


def test_a_supporting_figure_never_decides_even_when_flagged_or_failing() -> None:
    """Supporting criteria are shown beside the verdict: neither their result nor a flag on a
    figure only they read may change it."""
    st = Statement("s", "A beats B", (*ARMS, supporting("C high", "C", ">", 1)))
    flags = {"C": "its best lr is at the edge of the grid"}
    held = judge(st, {"A": 1, "B": 2, "C": 0}, flags)  # supporting fails, and is flagged
    assert (held.verdict, held.met) == (HOLDS, [True, False])
    failed = judge(st, {"A": 3, "B": 2, "C": 5}, flags)
    assert (failed.verdict, failed.detail) == (FAILS, "")
    # the same flag on a figure a required criterion reads does decide
    assert judge(st, {"A": 1, "B": 2, "C": 0}, {"A": flags["C"]}).verdict == INCONCLUSIVE


def _j(*verdicts: str) -> list[Judgement]:
    return [Judgement(v, []) for v in verdicts]


def test_a_summary_says_does_not_hold_only_when_no_statement_holds_in_any_way() -> None:
    """ "does not hold" is the evidence against the whole claim: every statement failed.
    A statement that holds, holds under a condition or is inconclusive is not evidence
    against it, and the summary counts each kind."""
    assert summary(_j(FAILS)) == "does not hold"
    assert summary(_j(FAILS, FAILS)) == "does not hold (none of 2 statements)"
    assert summary(_j(HOLDS)) == "holds"
    assert summary(_j(HOLDS, HOLDS, HOLDS)) == "holds (all 3 statements)"
    for mixed, want in (
        (_j(PARTLY), "1 statements: 1 hold only under a condition"),
        (_j(INCONCLUSIVE), "1 statements: 1 inconclusive"),
        (_j(HOLDS, FAILS), "2 statements: 1 hold, 1 do not hold"),
        (_j(FAILS, INCONCLUSIVE), "2 statements: 1 do not hold, 1 inconclusive"),
        (
            _j(HOLDS, PARTLY, FAILS, INCONCLUSIVE),
            "4 statements: 1 hold, 1 hold only under a condition, 1 do not hold, 1 inconclusive",
        ),
    ):
        assert summary(mixed) == want
        assert not summary(mixed).startswith("does not hold")


# -- statements that claim an effect: four outcomes read from an interval over seeds ----------

PLANTED = Statement(
    "planted",
    "A beats B",
    (),
    effect=EffectSpec("A - B", smallest=0.1, text="A's score minus B's"),
)


def _draws(mean: float, n: int, seed: int = 0, sd: float = 0.2) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(rng.normal(mean, sd, n))


def _verdict(values: list[float], st: Statement = PLANTED) -> str:
    return judge(st, {}, samples={"A - B": values}).verdict


def test_a_planted_effect_holds_and_a_planted_null_never_does() -> None:
    for seed in range(20):
        assert _verdict(_draws(0.6, 6, seed)) == HOLDS  # 0.6 against 0.1 with sd 0.2
        assert _verdict(_draws(0.0, 6, seed)) in (FAILS, NOT_RESOLVED)
        assert _verdict(_draws(0.0, 30, seed, sd=0.05)) == FAILS  # tight: no effect shown


def test_swapped_arms_give_the_opposite_verdict_or_not_resolved() -> None:
    for seed in range(20):
        values = _draws(0.6, 8, seed)
        assert _verdict(values) == HOLDS
        assert _verdict([-v for v in values]) in (FAILS, NOT_RESOLVED)


def test_adding_seeds_to_a_resolved_statement_does_not_reverse_it() -> None:
    """Seeds added one by one to a planted effect: once resolved, the verdict never turns
    into the opposite one (it may only stay)."""
    for seed in range(20):
        values = _draws(0.5, 12, seed)
        verdicts = [_verdict(values[:n]) for n in range(3, 13)]
        resolved = [v for v in verdicts if v != NOT_RESOLVED]
        assert FAILS not in resolved and resolved, verdicts


def test_an_unresolved_effect_says_how_many_seeds_would_resolve_it() -> None:
    j = judge(PLANTED, {}, samples={"A - B": [0.9, 0.1, 0.8]})
    assert j.verdict == NOT_RESOLVED and j.effect is not None
    assert j.effect.low < 0.1 < j.effect.high and j.effect.seeds == 3
    assert "about 6 seeds would likely resolve it" in j.detail
    one = judge(PLANTED, {}, samples={"A - B": [0.9]})  # one seed: no interval
    assert one.verdict == NOT_RESOLVED and one.effect is not None and one.effect.low == -np.inf


def test_an_unmet_setting_is_not_tested_never_does_not_hold() -> None:
    st = Statement(
        "regularized",
        "AdamW is better for regularized training",
        (require("the workload overfits without decay", "overfit gap", ">", 0.05),),
        effect=EffectSpec("A - B", smallest=0.0, text="AdamW's accuracy minus Adam+L2's"),
    )
    j = judge(st, {"overfit gap": 0.01}, samples={"A - B": [-0.2, -0.3, -0.25]})
    assert (j.verdict, j.label) == (
        NOT_TESTED,
        "not tested: the workload overfits without decay",
    )
    assert judge(st, {"overfit gap": 0.2}, samples={"A - B": [-0.2, -0.3, -0.25]}).verdict == FAILS


def test_algebra_is_exact_by_construction() -> None:
    st = Statement(
        "algebra", "equal", (require("equal to round-off", "diff", "<", 1e-12),), exact=True
    )
    assert judge(st, {"diff": 0.0}).verdict == EXACT
    assert judge(st, {"diff": 1.0}).label == "does not hold, by construction"


def test_a_statement_missing_its_samples_is_an_error() -> None:
    with pytest.raises(MissingFigure, match="per-seed effect 'A - B'"):
        judge(PLANTED, {}, samples={})


def test_the_full_run_adds_seeds_until_resolved_and_records_them(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim whose effect is unresolved at 3 seeds is measured again with more (full runs),
    up to its cap; each measurement draws seeds 0..n-1, so the first seeds are the same."""
    import descentlab.reproduce as rep

    calls: list[int] = []

    def measure(ctx: Context) -> Measurement:
        calls.append(ctx.seeds)
        values = [0.3, -0.1, 0.5, 0.35, 0.25, 0.4, 0.3, 0.2, 0.45, 0.3][: ctx.seeds]
        return Measurement({"seeds": ctx.seeds}, samples={"A - B": values})

    claim = Claim("planted", "t", "q", "e", (PLANTED,), measure, max_seeds=9)
    monkeypatch.setitem(rep.BY_KEY, "planted", claim)
    ctx = Context(Path(str(tmp_path)), quick=False, seeds=3)
    result = rep._measure("planted", "fp", ctx, {})
    assert calls == [3, 6, 9] and result["seeds"] == 9  # 6 seeds still straddle 0.1
    (st,) = result["statements"]
    assert st["verdict"] == HOLDS and st["effect"]["seeds"] == 9
    assert set(st["effect"]) >= {"estimate", "low", "high", "level", "smallest", "seeds"}
    calls.clear()
    quick = rep._measure("planted", "fp", Context(Path(str(tmp_path)), True, 3), {})
    assert calls == [3] and quick["statements"][0]["verdict"] == NOT_RESOLVED  # quick: no more
    capped = Claim("planted", "t", "q", "e", (PLANTED,), measure, max_seeds=4)
    monkeypatch.setitem(rep.BY_KEY, "planted", capped)
    calls.clear()
    assert rep._measure("planted", "fp", ctx, {})["seeds"] == 4 and calls == [3, 4]


def test_a_flagged_arm_makes_an_effect_inconclusive() -> None:
    st = Statement(
        "flagged",
        "A beats B",
        (supporting("A's loss below B's", "A loss", "<", "B loss"),),
        effect=EffectSpec("A - B", smallest=0.1, text="t"),
    )
    figures, samples = {"A loss": 1.0, "B loss": 2.0}, {"A - B": [0.5, 0.6, 0.7]}
    assert judge(st, figures, {}, samples).verdict == HOLDS
    flags = {"A loss": "A's best lr is the largest tried"}
    j = judge(st, figures, flags, samples)
    assert (j.verdict, j.detail) == (INCONCLUSIVE, "A's best lr is the largest tried")


def test_a_deterministic_effect_is_its_one_value_exactly() -> None:
    """Nothing random (exact gradients, a fixed start): one run measures the effect, so the
    interval is the point; it holds or does not, never 'not resolved'."""
    spec = EffectSpec("gap", 0.25, "a gap", deterministic=True)
    st = Statement("d", "A beats B", (), effect=spec)
    held = judge(st, {}, samples={"gap": [0.4]})
    assert held.verdict == HOLDS
    assert held.effect is not None and (held.effect.low, held.effect.high) == (0.4, 0.4)
    assert held.effect.method.startswith("deterministic")
    assert judge(st, {}, samples={"gap": [0.2]}).verdict == FAILS  # below what counts
    assert judge(st, {}, samples={"gap": [-0.4]}).verdict == FAILS  # swapped arms
    with pytest.raises(ValueError, match="2 different values"):
        judge(st, {}, samples={"gap": [0.4, 0.5]})  # something was random after all
    # the same one value read as a sample: one seed resolves nothing
    sampled = Statement("s", "A beats B", (), effect=EffectSpec("gap", 0.25, "a gap"))
    assert judge(sampled, {}, samples={"gap": [0.4]}).verdict == NOT_RESOLVED
