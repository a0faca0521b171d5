"""The verdict rules of ``descentlab reproduce`` (``reproduce/base.py``): how criteria decide a
statement, and how a claim's statements add up to its one-line summary."""

from __future__ import annotations

import pytest

from descentlab.reproduce.base import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    PARTLY,
    Condition,
    Judgement,
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
