"""A sweep's runs as a pandas DataFrame and as TensorBoard event files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from descentlab.lab import LabError, compare, load_runs, to_tensorboard


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sweep")
    compare(
        workloads=["ravine"],
        optimizers=["sgd", "adam"],
        lrs=[0.01, 3.0],  # sgd at 3.0 diverges: non-finite values must not break the export
        seeds=2,
        steps=12,
        out=out,
    )
    return out


def _records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "runs.jsonl").read_text().splitlines()]


def test_load_runs_gives_one_row_per_evaluation_with_the_runs_identity(sweep: Path) -> None:
    df = load_runs(sweep)
    records = _records(sweep)
    assert len(df) == sum(len(r["evals"]) for r in records)
    assert df["run"].nunique() == len(records) == 2 * 2 * 2
    assert set(df["optimizer"]) == {"sgd", "adam"} and set(df["seed"]) == {0, 1}
    assert "option.kappa" in df.columns and "train_loss" in df.columns
    # the numbers are the stored ones: adam at lr 0.01, seed 1, last evaluation
    rec = next(
        r
        for r in records
        if r["spec"]["optimizer"] == "adam" and r["spec"]["lr"] == 0.01 and r["spec"]["seed"] == 1
    )
    row = df[(df.run == rec["id"]) & (df.step == rec["evals"][-1]["step"])]
    assert row.train_loss.item() == rec["evals"][-1]["train_loss"]


def test_load_runs_per_step_and_per_run(sweep: Path) -> None:
    records = _records(sweep)
    steps = load_runs(sweep, per="step")
    assert len(steps) == sum(len(r["loss"]) for r in records)
    assert {"loss", "lr", "grad_norm", "update_norm", "time"} <= set(steps.columns)
    runs = load_runs(sweep, per="run")
    assert len(runs) == len(records)
    diverged = runs[runs.diverged]
    assert set(diverged.optimizer) == {"sgd"} and set(diverged.lr) == {3.0}
    with pytest.raises(LabError, match="per must be one of: eval, step, run"):
        load_runs(sweep, per="epoch")
    with pytest.raises(LabError, match=r"no runs\.jsonl"):
        load_runs(sweep / "missing")


def test_to_tensorboard_writes_one_run_per_configuration_readable_by_tensorboard(
    sweep: Path, tmp_path: Path
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    dirs = to_tensorboard(sweep, tmp_path / "tb")
    records = _records(sweep)
    assert len(dirs) == len(records) == len(set(dirs))
    rec = next(r for r in records if r["spec"]["optimizer"] == "adam")
    run_dir = next(
        d
        for d in dirs
        if f"lr={rec['spec']['lr']:g}" in str(d)
        and "adam" in str(d)
        and str(d).endswith(f"seed={rec['spec']['seed']}")
    )
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert {"train/loss", "train/lr", "eval/train_loss"} <= set(events.Tags()["scalars"])
    losses = [e.value for e in events.Scalars("eval/train_loss")]
    expected = [e["train_loss"] for e in rec["evals"]]
    assert losses == pytest.approx(expected, rel=1e-6)  # TensorBoard stores float32
    bad = next(r for r in records if r["diverged"])  # sgd at lr 3.0: exported all the same
    bad_dir = next(d for d in dirs if "sgd" in str(d) and "lr=3" in str(d))
    events = EventAccumulator(str(bad_dir))
    events.Reload()
    finite = [x for x in bad["loss"] if math.isfinite(x)]
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx(finite, rel=1e-6)


def test_the_cli_exports_to_tensorboard_and_refuses_an_unwritable_dir(tmp_path: Path) -> None:
    import subprocess
    import sys

    base = [sys.executable, "-m", "descentlab", "compare", "--workload", "ravine"]
    base += ["--optimizers", "sgd", "--lr", "0.01", "--seeds", "1", "--steps", "5"]
    ok = subprocess.run(
        [*base, "--out", str(tmp_path / "r"), "--tensorboard", str(tmp_path / "tb")],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr[-1000:]
    assert list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    blocked = tmp_path / "file"
    blocked.write_text("a file, not a folder")
    bad = subprocess.run(
        [*base, "--out", str(tmp_path / "r2"), "--tensorboard", str(blocked / "tb")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().count("\n") == 0 and "--tensorboard" in bad.stderr
    assert not (tmp_path / "r2").exists()  # refused before any run
