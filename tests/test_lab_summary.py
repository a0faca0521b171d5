"""The summary of a sweep's runs: mean ± std over seeds per lr, and the timing notes."""

from __future__ import annotations

import math
from typing import Any

import pytest

from descentlab.lab import summary
from lab_records import START, run_record


def test_a_line_per_lr_with_mean_and_spread_over_the_seeds_that_ran() -> None:
    rows = [
        run_record("a", 0.1, 0, [0.5, 0.2], accs=[0.8, 0.9]),
        run_record("a", 0.1, 1, [0.4, 0.4], accs=[0.7, 0.7]),
        run_record("a", 0.1, 2, [1e9], diverged=True),
        run_record("a", 0.01, 0, [2.0, 1.0]),
    ]
    rows[2]["evals"].append({"step": 1, "train_loss": math.nan})
    lines = summary.summarize(rows, {"toy": 0.3})
    assert [line["lr"] for line in lines] == [0.01, 0.1]  # sorted by lr
    line = lines[1]
    assert (line["seeds"], line["diverged"]) == (3, 1)
    assert line["final_loss"] == pytest.approx((0.3, 0.1))  # the seeds that did not diverge
    assert line["best_loss"] == pytest.approx((0.3, 0.1))
    assert line["start_loss"] == START
    assert line["final_acc"] == pytest.approx((0.8, 0.1))
    assert line["best_acc"] == pytest.approx((0.8, 0.1))
    # target 0.3: seed 0 reaches it at step 2, seed 1 never; the median of those that did
    assert (line["reached"], line["steps_to_target"], line["steps_to_target_runs"]) == (1, 2, [2])
    assert line["seconds_to_target"] == pytest.approx(0.02)
    assert "target" not in summary.summarize(rows, {"toy": None})[0]


def test_mean_std_and_finite() -> None:
    assert summary.finite([1.0, None, math.nan, math.inf, 2.0]) == [1.0, 2.0]
    assert summary.mean_std([1.0, 3.0]) == (2.0, 1.0)
    assert summary.mean_std([5.0]) == (5.0, 0.0)
    assert all(math.isnan(x) for x in summary.mean_std([]))


def _row(load: float, cpus: int = 4, clock: str | None = "process_cpu") -> dict[str, Any]:
    row: dict[str, Any] = {"load": [load, load, load], "load_end": [load, 0.0, 0.0], "cpus": cpus}
    if clock is not None:
        row["clock"] = clock
    return row


def test_load_warnings_only_for_high_or_uneven_load() -> None:
    assert summary.load_notes([_row(0.5), _row(0.9), _row(1.2)]) == []
    busy = summary.load_notes([_row(6.0), _row(6.5)])  # above 4 CPUs, evenly
    assert len(busy) == 1 and "busy during 2 of 2 run(s)" in busy[0] and "6.5 on 4 CPUs" in busy[0]
    resumed = summary.load_notes([_row(0.2), _row(0.3), _row(3.5)])  # per CPU 0.05 to 0.88
    assert len(resumed) == 1 and "very different machine loads" in resumed[0]
    both = summary.load_notes([_row(0.1), _row(9.0)])
    assert len(both) == 2
    old = summary.load_notes([_row(0.1), _row(0.1, clock=None)])
    assert len(old) == 1 and "wall-clock" in old[0]
