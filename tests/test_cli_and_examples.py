"""The command line and the examples, run as a user runs them."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from descentlab.tools import cli, demo

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", sorted((ROOT / "examples").glob("*.py")), ids=lambda p: p.name)
def test_examples_run_and_the_guard_finds_nothing(script: Path) -> None:
    """Each example runs under ``descentlab check``: it works, and teaches no pitfall."""
    out = subprocess.run(
        [sys.executable, "-m", "descentlab", "check", "--", sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()
    if script.name == "seed_adam_from_scratch.py":  # NumPy only: no torch optimizer to guard
        assert out.stderr.rstrip().endswith("nothing was checked"), out.stderr
    else:
        assert out.stderr.rstrip().endswith("no pitfall found"), out.stderr


def test_seed_example_prints_what_adam_really_does() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "seed_adam_from_scratch.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    values = [float(v) for v in out.split("[")[1].split("]")[0].split()]
    assert all(0.09 < v < 0.11 for v in values)  # ~100 steps of lr = 1e-3 each


def test_demo_rows_track_torch_optim() -> None:
    rows = demo.run(seed=1)
    assert [r["optimizer"] for r in rows] == [e.label for e in demo.ENTRIES]
    for r in rows:
        assert len(r["losses"]) == demo.EPOCHS
        assert r["losses"][-1] < r["losses"][0]
        assert r["gap"] is not None and r["gap"] < 1e-5


def test_cli_list_and_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list"]) == 0
    assert "adamw" in capsys.readouterr().out
    assert cli.main(["demo", "--seed", "2"]) == 0
    assert "AdamW" in capsys.readouterr().out


def test_cli_bad_input_exits_2_with_one_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "descentlab", "dmeo"], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert "invalid choice" in out.stderr and "Traceback" not in out.stderr


def test_bench_runs_tiny_and_writes_json(tmp_path: Path) -> None:
    import json

    out = tmp_path / "bench.json"
    code = cli.main(
        [
            "bench",
            "--optimizers",
            "adam,rmsprop",
            "--layouts",
            "5000 x 1k",
            "--scale",
            "0.002",
            "--reps",
            "2",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    variants = {r["variant"] for r in report["rows"]}
    assert {"torch for-loop", "torch foreach", "torch fused", "descentlab flat"} <= variants
    assert report["stream_gb_per_s"] > 0 and report["numpy"]["numel"] > 0
    assert all(r["vs_torch_fastest"] > 0 for r in report["rows"])


def test_bench_bad_optimizer_exits_2() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "descentlab", "bench", "--optimizers", "adamm"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "unknown optimizer 'adamm'" in out.stderr
    assert "Traceback" not in out.stderr


def test_compare_prints_warnings_as_one_line_and_leaves_the_process_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r"
    out.mkdir()
    (out / "runs.jsonl").write_text("not a run record\n")  # the store warns about it
    before = (warnings.showwarning, warnings.formatwarning)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        args = ["--workload", "ravine", "--optimizers", "sgd", "--lr", "0.1", "--seeds", "1"]
        code = cli.main(["compare", *args, "--steps", "3", "--out", str(out)])
        assert (warnings.showwarning, warnings.formatwarning) == before
    err = capsys.readouterr().err
    assert code == 0, err
    lines = [line for line in err.splitlines() if "unreadable" in line]
    assert lines and all(line.startswith("descentlab compare: warning: ") for line in lines)
    assert "Traceback" not in err and ".py:" not in err
