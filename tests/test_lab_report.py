"""The compare report: verdicts, the round-off floor, plots and the escaped HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import pytest

from descentlab.lab import WORKLOADS, report

matplotlib.use("Agg")

START = 64.0  # every constructed run starts at this loss


def _run(
    optimizer: str,
    lr: float,
    seed: int,
    losses: list[float],
    *,
    workload: str = "toy",
    accs: list[float] | None = None,
    diverged: bool = False,
    points: list[tuple[float, float]] | None = None,
) -> dict[str, Any]:
    """A run record as the runner writes it: evaluations at every step."""
    evals: list[dict[str, float]] = []
    for step, loss in enumerate([START, *losses]):
        e = {"step": step, "train_loss": loss}
        if accs is not None:
            e["test_acc"] = ([0.1, *accs])[step]
        evals.append(e)
    steps = len(losses)
    return {
        "spec": {
            "workload": workload,
            "options": {},
            "optimizer": optimizer,
            "lr": lr,
            "seed": seed,
            "regime": "full",
            "steps": steps,
            "eval_every": 1,
        },
        "id": f"{workload}-{optimizer}-{lr}-{seed}",
        "loss": losses,
        "time": [0.01 * (i + 1) for i in range(steps)],
        "evals": evals,
        "points": points or [],
        "diverged": diverged,
    }


def _verdicts(rows: list[dict[str, Any]], target: float | None = 0.3) -> dict[str, Any]:
    summary = report.summarize(rows, {"toy": target})
    return {v.metric: v for v in report.headline(summary, "toy", "full")}


def test_headline_names_the_clear_winner_on_each_metric() -> None:
    rows = [
        _run("a", 0.1, 0, [0.2, 0.10], accs=[0.9, 0.90]),
        _run("a", 0.1, 1, [0.2, 0.11], accs=[0.9, 0.91]),
        _run("b", 0.1, 0, [5.0, 0.50], accs=[0.6, 0.70]),
        _run("b", 0.1, 1, [5.0, 0.52], accs=[0.6, 0.72]),
    ]
    got = _verdicts(rows)
    assert got["final training loss"].winner == "a"
    assert got["held-out accuracy"].winner == "a"
    assert got["steps to target"].winner == "a"  # a reaches 0.3 at step 1, b never
    assert "b (1/2" not in got["steps to target"].text  # b reached on no seed
    assert "not reached on every seed: b (0/2 seeds)" in got["steps to target"].text


def test_overlapping_spreads_give_no_clear_winner() -> None:
    rows = [
        _run("a", 0.1, 0, [0.10]),
        _run("a", 0.1, 1, [0.20]),  # 0.15 ± 0.05
        _run("b", 0.1, 0, [0.12]),
        _run("b", 0.1, 1, [0.22]),  # 0.17 ± 0.05
        _run("c", 0.1, 0, [0.90]),
        _run("c", 0.1, 1, [0.91]),
    ]
    loss = _verdicts(rows, target=None)["final training loss"]
    assert loss.winner is None and sorted(loss.leaders) == ["a", "b"]
    assert loss.text.startswith("no clear winner") and "then c" in loss.text


def _ravine_like() -> list[dict[str, Any]]:
    """lr 0.1 (the grid's largest) ends lowest only by round-off; lr 0.03 reaches 0.3 first."""
    rows = []
    for seed in (0, 1):
        rows += [
            _run("r", 0.01, seed, [10.0, 5.0, 1.0, 1.0]),
            _run("r", 0.03, seed, [0.2, 1e-6, 1e-10, 1.8e-13]),
            _run("r", 0.1, seed, [1.0, 0.2, 1e-12, 1.3e-16]),
            _run("q", 0.1, seed, [0.2, 1e-9, 1e-50, 1e-120]),
        ]
    return rows


def test_round_off_never_picks_the_lr_or_the_winner() -> None:
    rows = _ravine_like()
    summary = report.summarize(rows, {"toy": 0.3})
    assert report.loss_floor(summary, "toy") == pytest.approx(1e-12 * START)
    assert report.best_lrs(summary)[("toy", "r", "full")] == 0.03
    assert report.grid_edge_notes(summary) == []
    loss = _verdicts(rows)["final training loss"]
    assert loss.winner is None and sorted(loss.leaders) == ["q", "r"]
    assert "round-off floor" in loss.text


def test_without_the_floor_round_off_would_decide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report, "REL_FLOOR", 0.0)
    rows = _ravine_like()
    summary = report.summarize(rows, {"toy": 0.3})
    assert report.best_lrs(summary)[("toy", "r", "full")] == 0.1
    assert len(report.grid_edge_notes(summary)) == 1
    assert _verdicts(rows)["final training loss"].winner == "q"


def test_grid_edge_note_when_the_edge_is_clearly_best() -> None:
    rows = [
        _run("s", lr, seed, [final])
        for lr, final in ((0.01, 1.0), (0.03, 0.5), (0.1, 0.1))
        for seed in (0, 1)
    ]
    summary = report.summarize(rows, {"toy": None})
    notes = report.grid_edge_notes(summary)
    assert len(notes) == 1 and "largest" in notes[0]
    assert "wider grid" in report.row_notes(summary)[("toy", "s", "full", 0.1)][0]


def _plots(workload: str, rows: list[dict[str, Any]]) -> report.Plots:
    summary = report.summarize(rows, {workload: None})
    return report.Plots(workload, rows, summary, WORKLOADS.get(workload))


def _line_colors(fig: Any) -> dict[str, str]:
    colors = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            label = line.get_label().split(" (")[0]
            if not label.startswith("_"):
                colors[label] = matplotlib.colors.to_hex(line.get_color())
    return colors


def test_loss_axis_stops_at_the_floor_and_colours_follow_the_label() -> None:
    plt = report.pyplot()
    p = _plots("toy", _ravine_like())
    curves, lrs = report.curves_figure(p), report.lr_figure(p)
    for ax in [*curves.axes[:2], lrs.axes[0]]:
        assert ax.get_yscale() == "log"
        assert ax.get_ylim()[0] == pytest.approx(1e-12 * START)
    # the same optimizer has the same colour in every plot and in another workload
    other = _plots("other", [_run("q", 0.1, 0, [1.0], workload="other")])
    other_fig = report.curves_figure(other)
    for fig in (curves, lrs):
        assert _line_colors(fig)["q"] == report.optimizer_color("q")
    assert _line_colors(other_fig)["q"] == report.optimizer_color("q")
    assert report.optimizer_color("adam") != report.optimizer_color("adamw")
    # legends sit right of the data area
    curves.canvas.draw()
    legend = curves.axes[1].get_legend()
    assert legend.get_window_extent().x0 >= curves.axes[1].get_window_extent().x1
    for fig in (curves, lrs, other_fig):
        plt.close(fig)


def test_trajectories_stay_in_the_workload_frame() -> None:
    plt = report.pyplot()
    rows = [
        _run("adamw", 0.1, 0, [1.0, 0.5], workload="ravine", points=[(-4, 1.5), (50, 80), (0, 0)])
    ]
    p = _plots("ravine", rows)
    fig = report.trajectory_figure(p)
    ax = fig.axes[0]
    x0, x1, y0, y1 = WORKLOADS["ravine"].bounds
    assert ax.get_xlim() == (x0, x1) and ax.get_ylim() == (y0, y1)
    path = next(line for line in ax.get_lines() if line.get_label().startswith("adamw"))
    assert path.get_clip_on()
    plt.close(fig)


def test_report_puts_conclusions_first_and_defines_its_notation(tmp_path: Path) -> None:
    rows = [*_ravine_like(), _run("r", 0.3, 0, [1e9], diverged=True)]
    rows[-1]["evals"].append({"step": 1, "train_loss": float("nan")})
    files = report.write_report(
        tmp_path, "t", ["toy: a note about toy.", "general note"], rows, {"toy": None}
    )
    md = files["markdown"].read_text()
    assert md.index("## Conclusions") < md.index("| optimizer |")
    assert md.index("final training loss: no clear winner") < md.index("| workload |")
    assert "training loss is ≤ 0.3" not in md  # no target for a user model
    assert "a note about toy." in md.split("## toy")[1]  # under its workload
    assert "general note" in md.split("## toy")[0]
    diverged_row = next(line for line in md.splitlines() if "| r | 0.3 |" in line)
    assert "1 of 1 seeds diverged" in diverged_row


def test_target_and_fraction_are_defined(tmp_path: Path) -> None:
    rows = [_run("a", 0.1, seed, [0.2, 0.1]) for seed in (0, 1)]
    info = WORKLOADS["digits-logreg"]  # target 0.3
    for r in rows:
        r["spec"]["workload"] = "digits-logreg"
    md = report.write_report(tmp_path, "t", [], rows, {"digits-logreg": info})["markdown"]
    text = md.read_text()
    assert "training loss is ≤ 0.3" in text and "(k/n): k of the n" in text
    assert "| 1 (2/2) |" in text


def test_html_escapes_labels(tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    rows = [_run(evil, 0.1, seed, [0.5, 0.1]) for seed in (0, 1)]
    page = report.write_report(tmp_path, "t", [], rows, {"toy": None})["html"].read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_reused_folder_keeps_no_stale_plots(tmp_path: Path) -> None:
    from descentlab.lab import compare

    stale = tmp_path / "plots" / "old-workload-loss.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"not ours")
    result = compare(
        workloads=["ravine"], optimizers=["sgd"], lrs=[0.1], seeds=1, steps=5, out=tmp_path
    )
    pngs = list((tmp_path / "plots").glob("*.png"))
    assert pngs and not stale.exists()
    assert all(p.name in (tmp_path / "report.md").read_text() for p in pngs)
    assert result.folder == tmp_path


def test_update_ratio_figure_from_the_runs_telemetry(tmp_path: Path) -> None:
    """A supervised workload's report plots each run's update/weight ratio; records from
    before the weight norm was recorded simply go without it."""
    rows = [_run(o, 0.1, seed, [0.5, 0.2, 0.1]) for o in ("a", "b") for seed in (0, 1)]
    for r in rows:
        r["evals"][-1]["test_loss"] = 0.3
        r["update_norm"], r["param_norm"] = [0.3, 0.2, 0.1], [10.0, 10.0, 10.0]
    md = report.write_report(tmp_path, "t", [], rows, {"toy": None})["markdown"].read_text()
    assert "toy-update-ratio.png" in md and list(tmp_path.rglob("toy-update-ratio.png"))
    assert "update-to-weight ratio" in md
    for r in rows:
        del r["param_norm"]
    md = report.write_report(tmp_path, "t", [], rows, {"toy": None})["markdown"].read_text()
    assert "update-ratio" not in md and not list(tmp_path.rglob("toy-update-ratio.png"))


def test_runs_record_the_ratio_their_telemetry_measured() -> None:
    from descentlab.lab.runner import RunSpec, run_one
    from descentlab.lab.spec import parse_optimizer, parse_regime

    workload = WORKLOADS["digits-mlp"]
    spec = RunSpec("digits-mlp", parse_optimizer("adam"), 1e-2, 0, parse_regime("full"), 3, 3)
    rec = run_one(spec, workload.build)
    assert len(rec.param_norm) == len(rec.update_norm) == 3
    # Adam's first step moves each element with a gradient by ~lr (a pixel that is 0 in
    # every image gives its weights none): ||dw|| <= lr * sqrt(number of weights)
    bound = 1e-2 * (128 * 64 + 128 + 10 * 128 + 10) ** 0.5
    assert 0.8 * bound < rec.update_norm[0] <= bound
    start = workload.build(0, {}).params  # the same seed: the same initial weights
    norm = sum(float(p.detach().pow(2).sum()) for p in start) ** 0.5
    assert rec.param_norm[0] == pytest.approx(norm)
