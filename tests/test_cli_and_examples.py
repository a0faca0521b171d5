"""The command line and the examples, run as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from descentlab import cli, demo

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", sorted((ROOT / "examples").glob("*.py")), ids=lambda p: p.name)
def test_examples_run(script: Path) -> None:
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()


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
