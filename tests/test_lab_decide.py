"""The report's decisions: the best lr (one rule, shared with reproduce), the round-off
floor, grid-edge notes and the verdicts."""

from __future__ import annotations

import math
from typing import Any

import pytest

from descentlab.lab import decide
from descentlab.lab.summary import summarize
from descentlab.reproduce.common import Tuned, best
from lab_records import START, ravine_like, run_record


def _verdicts(rows: list[dict[str, Any]], target: float | None = 0.3) -> dict[str, Any]:
    summary = summarize(rows, {"toy": target})
    return {v.metric: v for v in decide.headline(summary, "toy", "full")}


# ---------------------------------------------------------------- the one choice rule


def test_lowest_ties_within_and_breaks_ties_by_rank_then_order() -> None:
    scores = {0.01: 1.0, 0.03: 1.0 + 1e-13, 0.1: 1.0 + 1e-9, 0.3: math.nan}
    assert decide.lowest(scores) == (0.01, [0.01])  # no tie rule: the strictly lowest
    best_lr, tied = decide.lowest(scores, within=1e-12, rank=lambda lr: -lr) or (None, [])
    assert (best_lr, tied) == (0.03, [0.01, 0.03])  # 0.1 is beyond the tie, NaN loses
    assert decide.lowest({0.1: 2.0, 0.3: 2.0}) == (0.1, [0.1, 0.3])  # the first given
    assert decide.lowest({0.1: math.inf, 0.3: math.nan}) == (0.1, [0.1, 0.3])
    assert decide.lowest({}) is None


def test_reproduce_chooses_with_the_same_rule_and_no_floor() -> None:
    """reproduce's tuned lr is ``lowest`` without a tie rule: a difference far below the
    lab's floor still decides, exact ties go to the first lr tried, non-finite scores lose."""
    tuned = Tuned({0.01: 1.0 + 1e-15, 0.03: 1.0, 0.1: -math.inf, 0.3: math.nan})
    assert tuned.lr == 0.03
    assert Tuned({0.1: 0.5, 0.03: 0.5}).lr == 0.1
    runs = {lr: [run_record("a", lr, 0, [loss])] for lr, loss in ((0.1, 0.2), (0.3, 0.1))}
    runs[0.3][0]["diverged"] = True  # diverged runs lose
    assert best(runs)[0] == 0.1


def _line(lr: float, final: float, *, reached: int = 0, steps: float | None = None,
          diverged: int = 0, seeds: int = 2) -> dict[str, Any]:  # fmt: skip
    line = {"workload": "toy", "optimizer": "a", "regime": "full", "lr": lr, "seeds": seeds,
            "diverged": diverged, "final_loss": (final, 0.0), "start_loss": START}  # fmt: skip
    if steps is not None or reached:
        line.update(target=0.3, reached=reached, steps_to_target=steps)
    return line


def test_choices_break_a_floor_tie_by_target_then_steps() -> None:
    floor = 1e-12 * START
    tied = [_line(0.01, 1.0, reached=1, steps=5), _line(0.03, 1.0 + floor / 2, reached=2,
            steps=9), _line(0.1, 1.0, reached=2, steps=7)]  # fmt: skip
    choice = decide.choices(tied)[("toy", "a", "full")]
    assert choice.line["lr"] == 0.1  # most seeds reached, then fewer steps
    assert choice.tied == [0.01, 0.03, 0.1] and choice.grid == [0.01, 0.03, 0.1]
    apart = [_line(0.01, 1.0, reached=1, steps=5), _line(0.1, 1.0 + 2 * floor, reached=2,
             steps=7)]  # fmt: skip
    assert decide.best_lrs(apart)[("toy", "a", "full")] == 0.01  # beyond the floor: no tie


def test_choices_prefer_lrs_where_no_seed_diverged() -> None:
    lines = [_line(0.01, 1.0), _line(0.1, 0.5, diverged=1), _line(1.0, math.nan, diverged=2)]
    assert decide.best_lrs(lines)[("toy", "a", "full")] == 0.01
    some = [_line(0.1, 0.5, diverged=1), _line(0.3, 0.4, diverged=1)]  # every lr lost a seed
    assert decide.best_lrs(some)[("toy", "a", "full")] == 0.3
    assert decide.choices([_line(1.0, math.nan, diverged=2)]) == {}


def test_grid_edge_only_for_a_lone_best_at_either_end() -> None:
    def choice(best: float, tied: list[float]) -> decide.Choice:
        return decide.Choice({"lr": best}, tied, [0.01, 0.03, 0.1])

    assert decide.grid_edge(choice(0.01, [0.01])) == "smallest"
    assert decide.grid_edge(choice(0.1, [0.1])) == "largest"
    assert decide.grid_edge(choice(0.03, [0.03])) is None
    assert decide.grid_edge(choice(0.01, [0.01, 0.03])) is None  # tied: not clearly at the edge
    assert decide.grid_edge(decide.Choice({"lr": 0.1}, [0.1], [0.03, 0.1])) is None


# ---------------------------------------------------------------- verdicts (moved)


def test_headline_names_the_clear_winner_on_each_metric() -> None:
    rows = [
        run_record("a", 0.1, 0, [0.2, 0.10], accs=[0.9, 0.90]),
        run_record("a", 0.1, 1, [0.2, 0.11], accs=[0.9, 0.91]),
        run_record("b", 0.1, 0, [5.0, 0.50], accs=[0.6, 0.70]),
        run_record("b", 0.1, 1, [5.0, 0.52], accs=[0.6, 0.72]),
    ]
    rows += [  # worse on both sides: every best lr is bracketed by its grid
        run_record(name, lr, seed, [5.0, 3.0], accs=[0.1, 0.1])
        for name in ("a", "b")
        for lr in (0.03, 0.3)
        for seed in (0, 1)
    ]
    got = _verdicts(rows)
    assert got["final training loss"].winner == "a"
    assert got["held-out accuracy"].winner == "a"
    assert got["steps to target"].winner == "a"  # a reaches 0.3 at step 1, b never
    assert "b (1/2" not in got["steps to target"].text  # b reached on no seed
    assert "not reached on every seed: b (0/2 seeds)" in got["steps to target"].text


def _bracketed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` (all at lr 0.1) with worse runs at 0.03 and 0.3: every best lr bracketed."""
    names = {r["spec"]["optimizer"] for r in rows}
    seeds = {r["spec"]["seed"] for r in rows}
    return rows + [
        run_record(n, lr, seed, [5.0]) for n in names for lr in (0.03, 0.3) for seed in seeds
    ]


def test_an_effect_whose_interval_straddles_zero_gives_no_clear_winner() -> None:
    rows = _bracketed(
        [
            run_record("a", 0.1, 0, [0.10]),
            run_record("a", 0.1, 1, [0.20]),  # 0.15 ± 0.05
            run_record("b", 0.1, 0, [0.22]),
            run_record("b", 0.1, 1, [0.12]),  # 0.17 ± 0.05; per seed +0.12, then -0.08
            run_record("c", 0.1, 0, [0.90]),
            run_record("c", 0.1, 1, [0.91]),
        ]
    )
    loss = _verdicts(rows, target=None)["final training loss"]
    assert loss.winner is None and sorted(loss.leaders) == ["a", "b"]
    assert loss.text.startswith("no clear winner") and "then c" in loss.text
    assert "not resolved against a: b +0.02 worse [" in loss.text
    assert "95% t-interval over 2 paired seeds" in loss.text


def test_seeds_are_paired_so_a_consistent_small_effect_wins_through_wide_spreads() -> None:
    """A seed fixes the weights and the data order: b is 0.02 worse on every seed, though
    each one's spread over seeds (0.05) is wider than the gap (the old overlap rule: a tie)."""
    rows = _bracketed(
        [
            run_record("a", 0.1, 0, [0.10]),
            run_record("a", 0.1, 1, [0.20]),
            run_record("a", 0.1, 2, [0.15]),
            run_record("b", 0.1, 0, [0.12]),
            run_record("b", 0.1, 1, [0.22]),
            run_record("b", 0.1, 2, [0.17]),
        ]
    )
    loss = _verdicts(rows, target=None)["final training loss"]
    assert loss.winner == "a", loss.text
    assert "(b +0.02 worse [+0.02, +0.02]; 95% t-interval over 3 paired seeds)" in loss.text
    swapped = [{**r, "spec": {**r["spec"], "optimizer": {"a": "b", "b": "a"}[
        r["spec"]["optimizer"]]}} for r in rows]  # fmt: skip
    assert _verdicts(swapped, target=None)["final training loss"].winner == "b"


def test_one_seed_never_names_a_winner() -> None:
    rows = _bracketed([run_record("a", 0.1, 0, [0.1]), run_record("b", 0.1, 0, [0.9])])
    loss = _verdicts(rows, target=None)["final training loss"]
    assert loss.winner is None and "b: 1 paired seed, no interval" in loss.text


def test_a_rival_that_diverged_on_a_seed_counts_against_itself() -> None:
    rows = [
        run_record("a", 0.1, 0, [0.10]),
        run_record("a", 0.1, 1, [0.11]),
        run_record("a", 0.1, 2, [0.12]),
        run_record("b", 0.1, 0, [0.50]),
        run_record("b", 0.1, 1, [0.52]),
        run_record("b", 0.1, 2, [float("nan")], diverged=True),
    ]
    a, b = summarize(rows, {"toy": None})
    effect = decide.paired_effect(
        decide._by_seed(a, "final_loss_runs"), decide._by_seed(b, "final_loss_runs"), True, 1e-12
    )
    assert effect.seeds == 3 and effect.high == math.inf and effect.low == pytest.approx(0.4)
    backwards = decide.paired_effect(  # the best's own divergence counts against it
        decide._by_seed(b, "final_loss_runs"), decide._by_seed(a, "final_loss_runs"), True, 1e-12
    )
    assert backwards.low == -math.inf


def test_round_off_never_picks_the_lr_or_the_winner() -> None:
    rows = ravine_like()
    summary = summarize(rows, {"toy": 0.3})
    assert decide.loss_floor(summary, "toy") == pytest.approx(1e-12 * START)
    assert decide.best_lrs(summary)[("toy", "r", "full")] == 0.03
    notes = decide.grid_edge_notes(summary)  # r's 0.03 is bracketed; q tried one lr
    assert not any(" r: " in n for n in notes)
    assert any("q: only lr 0.1 was tried (untuned)" in n for n in notes)
    loss = _verdicts(rows)["final training loss"]
    assert loss.winner is None and sorted(loss.leaders) == ["q", "r"]
    assert "round-off floor" in loss.text


def test_without_the_floor_round_off_would_decide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decide, "REL_FLOOR", 0.0)
    rows = ravine_like()
    summary = summarize(rows, {"toy": 0.3})
    assert decide.best_lrs(summary)[("toy", "r", "full")] == 0.1
    assert any(" r: the best lr 0.1 is the largest" in n for n in decide.grid_edge_notes(summary))
    loss = _verdicts(rows)["final training loss"]  # q would win, over an unbracketed r
    assert loss.winner is None
    assert loss.text.startswith("not resolved: r's best lr is the largest tried (q ")


def test_grid_edge_note_when_the_edge_is_clearly_best() -> None:
    rows = [
        run_record("s", lr, seed, [final])
        for lr, final in ((0.01, 1.0), (0.03, 0.5), (0.1, 0.1))
        for seed in (0, 1)
    ]
    summary = summarize(rows, {"toy": None})
    notes = decide.grid_edge_notes(summary)
    assert len(notes) == 1 and "largest" in notes[0]
    assert "wider grid" in decide.row_notes(summary)[("toy", "s", "full", 0.1)][0]


# ---------------------------------------------------------------- no winner over an untuned rival


def _two(a: str, b: str, grid: tuple[float, ...], loss: dict[str, dict[float, float]]):
    """Two optimizers on one grid, two seeds, final losses ``loss[label][lr]`` (+-1%)."""
    rows = []
    for name, label in ((a, "fast"), (b, "slow")):
        for lr in grid:
            for seed in (0, 1):
                final = loss[label][lr] * (1 + 0.01 * seed)
                rows.append(run_record(name, lr, seed, [5.0, 2.0, final]))
    return rows


EDGE = {"fast": {1e-3: 0.5, 1e-2: 0.155}, "slow": {1e-3: 2.0, 1e-2: 0.84}}
BRACKETED = {
    "fast": {1e-3: 0.5, 1e-2: 0.155, 1e-1: 0.4},
    "slow": {1e-3: 2.0, 1e-2: 0.84, 1e-1: 1.5},
}


def test_the_readmes_two_lr_comparison_with_both_at_the_edge_is_not_resolved() -> None:
    rows = _two("adam", "sgd:momentum=0.9", (1e-3, 1e-2), EDGE)
    loss = _verdicts(rows, target=None)["final training loss"]
    assert loss.winner is None
    assert loss.text.startswith("not resolved: sgd:momentum=0.9's best lr is the largest tried")
    assert "adam 0.156" in loss.text  # the figures are still shown
    notes = decide.grid_edge_notes(summarize(rows, {"toy": None}))
    assert any("sgd:momentum=0.9: the best lr 0.01 is the largest tried" in n and "add 0.032, 0.1"
               in n for n in notes)  # fmt: skip


def test_a_bracketed_grid_names_the_winner_and_swapping_labels_swaps_it() -> None:
    rows = _two("adam", "sgd", (1e-3, 1e-2, 1e-1), BRACKETED)
    assert _verdicts(rows, target=None)["final training loss"].winner == "adam"
    swapped = _two("sgd", "adam", (1e-3, 1e-2, 1e-1), BRACKETED)
    assert _verdicts(swapped, target=None)["final training loss"].winner == "sgd"
    assert decide.grid_edge_notes(summarize(rows, {"toy": None})) == []


def test_the_winners_own_edge_does_not_unresolve_it() -> None:
    """A winner already beats every tuned rival: its optimum beyond the edge can only be
    better still (the notes say to widen its grid)."""
    loss = {"fast": {1e-3: 0.5, 1e-2: 0.155, 1e-1: 0.1}, "slow": BRACKETED["slow"]}
    rows = _two("adam", "sgd", (1e-3, 1e-2, 1e-1), loss)
    assert _verdicts(rows, target=None)["final training loss"].winner == "adam"


def test_a_single_lr_comparison_is_reported_untuned() -> None:
    rows = _two("adam", "sgd", (1e-2,), {"fast": {1e-2: 0.155}, "slow": {1e-2: 0.84}})
    loss = _verdicts(rows, target=None)["final training loss"]
    assert loss.winner is None and "sgd is untuned (one lr tried)" in loss.text
    notes = decide.grid_edge_notes(summarize(rows, {"toy": None}))
    assert any("sgd: only lr 0.01 was tried (untuned)" in n for n in notes)


def test_different_tuning_budgets_are_stated() -> None:
    rows = _two("adam", "sgd", (1e-3, 1e-2, 1e-1), BRACKETED)
    rows = [r for r in rows if not (r["spec"]["optimizer"] == "sgd" and r["spec"]["lr"] == 1e-3)]
    notes = decide.grid_edge_notes(summarize(rows, {"toy": None}))
    assert "toy [full]: tuning budgets differ: adam 3 lrs x 2 seeds, sgd 2 lrs x 2 seeds." in notes
