"""The report's documents: conclusions first, notation defined, notes under their workload,
plots referenced, the escaped HTML page."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest

from descentlab.lab import WORKLOADS, report
from descentlab.lab.decide import grid_edge_notes
from descentlab.lab.summary import summarize
from lab_records import ravine_like, run_record

matplotlib.use("Agg")


def test_report_puts_conclusions_first_and_defines_its_notation(tmp_path: Path) -> None:
    rows = [*ravine_like(), run_record("r", 0.3, 0, [1e9], diverged=True)]
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
    rows = [run_record("a", 0.1, seed, [0.2, 0.1]) for seed in (0, 1)]
    info = WORKLOADS["digits-logreg"]  # target 0.3
    for r in rows:
        r["spec"]["workload"] = "digits-logreg"
    md = report.write_report(tmp_path, "t", [], rows, {"digits-logreg": info})["markdown"]
    text = md.read_text()
    assert "training loss is ≤ 0.3" in text and "(k/n): k of the n" in text
    assert "| 1 (2/2) |" in text


def test_html_escapes_labels(tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    rows = [run_record(evil, 0.1, seed, [0.5, 0.1]) for seed in (0, 1)]
    page = report.write_report(tmp_path, "t", [], rows, {"toy": None})["html"].read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_reused_folder_keeps_no_stale_plots(tmp_path: Path) -> None:
    from descentlab.lab import compare
    from descentlab.lab.files import MARKER

    (tmp_path / MARKER).write_text('{"kind": "compare"}')  # an earlier report's folder
    stale = tmp_path / "plots" / "old-workload-loss.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an earlier report's plot")
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
    rows = [run_record(o, 0.1, seed, [0.5, 0.2, 0.1]) for o in ("a", "b") for seed in (0, 1)]
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
    from descentlab.lab.runner import run_one
    from descentlab.lab.spec import parse_optimizer, parse_regime
    from descentlab.lab.training import RunSpec

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


def test_the_tuning_budget_is_stated(tmp_path: Path) -> None:
    rows = [
        run_record(name, lr, seed, [0.2, 0.1])
        for name in ("a", "b")
        for lr in (0.01, 0.1)
        for seed in (0, 1, 2)
    ]
    (tmp_path / "same").mkdir()
    (tmp_path / "differ").mkdir()
    text = report.write_report(tmp_path / "same", "t", [], rows, {"toy": None})["markdown"]
    assert "Tuning budget: 2 lrs × 3 seeds for every optimizer." in text.read_text()
    fewer = [r for r in rows if not (r["spec"]["optimizer"] == "b" and r["spec"]["lr"] == 0.1)]
    notes = grid_edge_notes(summarize(fewer, {"toy": None}))
    text = report.write_report(tmp_path / "differ", "t", notes, fewer, {"toy": None})["markdown"]
    md = text.read_text()
    assert "Tuning budget:" not in md
    assert "tuning budgets differ: a 2 lrs x 3 seeds, b 1 lrs x 3 seeds." in md
