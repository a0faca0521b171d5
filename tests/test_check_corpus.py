"""``descentlab check`` on a corpus of realistic training scripts (tests/check_corpus):
every correct script silent, every buggy one caught, with the findings it should have and
no other.

Each script states what it expects in a header line, ``# expect: kind, kind`` (``none`` for
a correct script), and optionally ``# advice: kind`` (advice reported apart from findings).
The fine-tuning scripts load checkpoints that ``_pretrain.py`` writes first, in a process
of its own, as a checkpoint from another run would be. A script is held to one finding per
problem: as many finding lines in the summary as kinds expected.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

CORPUS = Path(__file__).resolve().parent / "check_corpus"
SCRIPTS = sorted(p for p in CORPUS.glob("*.py") if not p.name.startswith("_"))


def _expected(script: Path, key: str) -> set[str]:
    match = re.search(rf"^# {key}: (.+)$", script.read_text(), re.MULTILINE)
    if match is None:
        return set()
    kinds = {k.strip() for k in match.group(1).split(",")}
    return set() if kinds == {"none"} else kinds


def _reported(summary: str) -> tuple[list[str], list[str]]:
    """(finding kinds, advice kinds) of a summary, one entry per line."""
    findings: list[str] = []
    advice: list[str] = []
    target = findings
    for line in summary.splitlines():
        if line.startswith("  advice (not a pitfall):"):
            target = advice
        match = re.match(r"  - \[[^\]]+\] (\w+) \(step", line)
        if match:
            target.append(match.group(1))
    return findings, advice


def _check(script: Path, folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "descentlab", "check", "--", sys.executable, script.name],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every script run under ``descentlab check`` (several at once: each is its own pair
    of processes), after the checkpoints are made."""
    folder = tmp_path_factory.mktemp("corpus")
    shutil.copy(CORPUS / "_pretrain.py", folder)
    proc = subprocess.run(
        [sys.executable, "_pretrain.py"], cwd=folder, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for script in SCRIPTS:
        shutil.copy(script, folder)
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        done = pool.map(lambda script: _check(script, folder), SCRIPTS)
        return {script.name: proc for script, proc in zip(SCRIPTS, done, strict=True)}


def test_the_corpus_is_large_and_mixed() -> None:
    expectations = [_expected(s, "expect") for s in SCRIPTS]
    assert all("# expect: " in s.read_text() for s in SCRIPTS)
    correct = sum(not e for e in expectations)
    assert len(SCRIPTS) >= 30 and correct >= 15 and len(SCRIPTS) - correct >= 10
    covered = set().union(*expectations)
    assert covered >= {
        "grad_accumulation", "zeroed_before_step", "coupled_weight_decay", "finetuning_lr",
        "nonfinite_grad", "eps_underflow", "second_moment_underflow",
    }  # fmt: skip


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_check_reports_what_the_script_expects(script: Path, results: dict[str, Any]) -> None:
    proc = results[script.name]
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = proc.stderr[proc.stderr.rindex("descentlab check: ") :]
    assert "nothing was checked" not in summary, summary
    findings, advice = _reported(summary)
    expected = _expected(script, "expect")
    assert set(findings) == expected, summary  # no false alarm, no miss
    assert len(findings) == len(expected), summary  # one finding per problem
    assert set(advice) == _expected(script, "advice"), summary
