"""The lab on the terminal and its clocks: CPU-time timings, load warnings, the summary
table at 80 columns, the progress line."""

from __future__ import annotations

import io
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console

from descentlab.lab import compare, training
from descentlab.lab.progress import SweepProgress
from descentlab.lab.runner import model_build, run_one
from descentlab.lab.spec import Regime, parse_optimizer
from descentlab.lab.training import RunSpec
from descentlab.lab.workloads import supervised_problem
from descentlab.tools import cli

# ------------------------------------------------------------------------------ timing


class Sleepy(torch.nn.Linear):
    """A model whose every forward pass waits without using the CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.1)
        return super().forward(x)


def test_a_run_is_timed_in_cpu_seconds_of_the_training_thread() -> None:
    x, y = torch.randn(16, 3), torch.randn(16, 1)

    def make(m: torch.nn.Module) -> Any:
        return supervised_problem(m, x, y, None, None, torch.nn.functional.mse_loss, False)

    spec = RunSpec("sleepy", parse_optimizer("sgd"), 1e-2, 0, Regime("full"), 3, 100)
    rec = run_one(spec, model_build(Sleepy(3, 1), make))
    assert len(rec.time) == 3 and rec.seconds == rec.time[-1]
    assert rec.clock == "process_cpu"
    # three steps slept 0.3 s: wall time counts the sleep, CPU time of the thread does not
    assert rec.wall_seconds >= 0.3
    assert rec.seconds < 0.15
    assert len(rec.load) == 3 and len(rec.load_end) == 3 and rec.cpus == os.cpu_count()


KW: dict[str, Any] = dict(workloads=["ravine"], optimizers=["sgd", "adam"], lrs=[1e-2], seeds=1)


def test_sweep_records_load_and_warns_in_report_and_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(training, "machine_load", lambda: ([0.1, 0.1, 0.1], 2))
    quiet = compare(out=tmp_path / "quiet", steps=5, **KW)
    config = json.loads((tmp_path / "quiet" / "config.json").read_text())
    assert len(config["machine"]["load"]) == 3 and config["machine"]["cpus"] == os.cpu_count()
    assert "CPU seconds" in config["timing"]
    for row in quiet.rows:
        assert row["load"] == [0.1, 0.1, 0.1] and row["cpus"] == 2
        assert row["clock"] == "process_cpu" and row["wall_seconds"] >= 0
    text = (tmp_path / "quiet" / "report.md").read_text()
    assert "CPU seconds of the process" in text and "Warning" not in text
    assert not any("Warning" in n for n in quiet.notes)

    # the same folder resumed on a busy machine: the new runs were timed under other load
    monkeypatch.setattr(training, "machine_load", lambda: ([5.0, 5.0, 5.0], 2))
    out = str(tmp_path / "quiet")
    args = ["compare", "--workload", "ravine", "--optimizers", "sgd,adam", "--lr", "1e-2,3e-2"]
    code = cli.main([*args, "--seeds", "1", "--steps", "5", "--out", out])
    assert code == 0
    printed = " ".join(capsys.readouterr().out.split())
    text = " ".join((tmp_path / "quiet" / "report.md").read_text().split())
    for where in (printed, text):
        assert "busy during 2 of 4 run(s)" in where
        assert "very different machine loads" in where


# ------------------------------------------------------------------------------ table


LABELS = ["adam", "adam:betas=0.9/0.99", "sgd:momentum=0.9", "sgd:momentum=0.9:nesterov=true"]


def _labels_in(text: str) -> list[str]:
    """The first word of every line that starts a row (no leading space)."""
    return [line.split()[0].rstrip(":") for line in text.splitlines() if line.strip()]


def test_cli_summary_fits_80_columns_with_every_label_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    args = ["compare", "--workload", "ravine,digits-logreg", "--optimizers", ",".join(LABELS)]
    args += ["--lr", "1e-2", "--seeds", "1", "--steps", "6", "--out", str(tmp_path)]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "best learning rate" in out
    assert all(len(line) <= 80 for line in out.splitlines())
    assert "…" not in out and "..." not in out
    first_words = _labels_in(out)
    for label in LABELS:  # each label whole, once per workload, never cut or merged
        assert first_words.count(label) == 2, label


def test_summary_too_narrow_for_a_table_lists_each_optimizer_whole(tmp_path: Path) -> None:
    long = "sgd:dampening=0:momentum=0.9:nesterov=true:weight_decay=0.0001"  # 62 characters
    res = compare(out=tmp_path, steps=5, **{**KW, "optimizers": ["adam", long]})
    for width in (80, 66):
        console = Console(width=width, file=io.StringIO())
        cli.print_summary(console, res.summary)
        text = console.file.getvalue()  # type: ignore[attr-defined]
        assert all(len(line) <= width for line in text.splitlines())
        assert "…" not in text
        words = re.findall(r"\S+", text)
        assert f"{long}:" in words and "adam:" in words


# ------------------------------------------------------------------------------ progress


def _specs(n: int) -> list[RunSpec]:
    return [
        RunSpec("ravine", parse_optimizer("adam"), 0.1 * (i + 1), 0, Regime("full"), 10, 1)
        for i in range(n)
    ]


def test_progress_names_the_run_in_progress_never_a_cached_one() -> None:
    a, b, c = _specs(3)
    state = SweepProgress([a, b, c], cached={a.id})
    assert "0 of 3 runs done" in state.text() and "ETA estimating" in state.text()
    state.finish(a, True)
    assert "1 of 3 runs done (1 read back)" in state.text() and "lr=0.1 " not in state.text()
    state.start(b)
    assert "run 2 of 3 (1 read back), ETA estimating: ravine adam lr=0.2 seed=0" in state.text()
    state.finish(b, False)
    eta = state.eta()
    assert eta is not None and eta >= 0  # one run of 10 steps left, at b's pace
    state.start(c)
    assert re.search(r"run 3 of 3 \(1 read back\), ETA \d+:\d\d: ravine adam lr=0.3", state.text())
    state.finish(c, False)
    assert state.eta() == 0.0 and "3 of 3 runs done" in state.text()


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_compare_shows_progress_on_a_terminal_and_is_silent_when_piped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    compare(out=tmp_path, steps=5, **KW)  # stderr captured by pytest: not a terminal
    assert capsys.readouterr() == ("", "")
    terminal = TTY()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setenv("COLUMNS", "100")
    compare(out=tmp_path, steps=5, **{**KW, "lrs": [1e-2, 3e-2]})  # two of four read back
    monkeypatch.undo()
    text = terminal.getvalue()
    # in order: sgd 0.01 (read back), sgd 0.03, adam 0.01 (read back), adam 0.03
    assert "run 2 of 4 (1 read back)" in text and "run 4 of 4 (2 read back)" in text
    shown = re.findall(
        r"run \d of 4[^,]*, ETA (?:estimating|[\d:]+): ravine (\S+) lr=(\S+) seed=0", text
    )
    assert {(opt, lr) for opt, lr in shown} == {("sgd", "0.03"), ("adam", "0.03")}
    assert "ETA" in text
