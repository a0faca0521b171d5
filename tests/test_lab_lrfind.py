"""``--lr auto``: an lr range test places the grid, and a best lr at an edge widens it."""

from __future__ import annotations

from pathlib import Path

import pytest

from descentlab.lab import LabError, compare, decide, lrfind, summary
from descentlab.lab.spec import parse_optimizer, parse_regime
from descentlab.lab.workloads import WORKLOADS

KW = dict(workloads=["digits-logreg"], optimizers=["sgd", "adam"], seeds=1, steps=60)


def _edges(rows: list[dict], targets: dict) -> list[str]:
    rows = summary.summarize(rows, targets)
    return [side for c in decide.choices(rows).values() if (side := decide.grid_edge(c))]


def test_range_test_finds_the_lr_where_the_loss_falls_and_stops_at_the_blow_up() -> None:
    build = WORKLOADS["digits-logreg"].build
    test = lrfind.range_test(build, parse_optimizer("adam"), parse_regime("minibatch:64"), {})
    assert test.lrs == sorted(test.lrs) and test.lrs[0] == lrfind.LOW
    assert len(test.lrs) < lrfind.TEST_STEPS  # stopped once the loss blew up
    assert min(test.losses) < test.losses[0] / 2  # it did fall first
    assert 1e-4 < test.best_lr < 10 and test.center == pytest.approx(test.best_lr / 10)
    grid = test.grid()
    assert len(grid) == 7 and grid == sorted(grid)
    assert grid[0] < test.center < grid[-1]


def test_auto_grid_brackets_the_best_lr_and_is_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    res = compare(out=tmp_path, **KW)
    targets = {"digits-logreg": WORKLOADS["digits-logreg"].target}
    assert _edges(res.rows, targets) == []  # no best lr at an edge
    assert any("lr range test: lowest smoothed loss at lr" in n for n in res.notes)
    assert len({r["spec"]["lr"] for r in res.rows if r["spec"]["optimizer"] == "adam"}) >= 7
    # resumed: the grid is read back, not tested again, and no run is trained again
    monkeypatch.setattr(lrfind, "range_test", lambda *a, **k: pytest.fail("tested again"))
    again = compare(out=tmp_path, **KW)
    assert again.rows == res.rows


def test_a_grid_that_misses_the_optimum_is_widened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Centred 30x too low, the best lr sits at the top: lrs are added until it does not."""
    monkeypatch.setattr(lrfind, "CENTER_BELOW", 300.0)
    res = compare(out=tmp_path, **{**KW, "optimizers": ["adam"]})
    targets = {"digits-logreg": WORKLOADS["digits-logreg"].target}
    added = [n for n in res.notes if "was the largest of the grid; added" in n]
    assert added, res.notes
    assert _edges(res.rows, targets) == []
    assert len({r["spec"]["lr"] for r in res.rows}) > 7


def test_bad_lr_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="one of: auto, grid"):
        compare(out=tmp_path, lrs="best", **{k: v for k, v in KW.items()})  # type: ignore[arg-type]
