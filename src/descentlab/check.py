"""``descentlab check -- python train.py [args]``: run an unmodified training script with
:func:`descentlab.guard` on every optimizer it creates, then summarize the findings.

The script runs in its own process, exactly as given, with the exit code passed through.
Its Python imports descentlab's ``sitecustomize`` at start-up (``PYTHONPATH``), which
attaches the guard to each optimizer at its first step and writes each finding, as it is
made, to a report file that this command reads at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

SITE = Path(__file__).resolve().parent / "_check_site"


def run(command: list[str], out: TextIO = sys.stderr, *, finetuning: bool = False) -> int:
    """Run ``command`` with every optimizer guarded; print the summary to ``out``; return
    the command's exit code. ``finetuning``: watch the update ratio of every weight tensor
    (``guard(finetuning=True)``), not only of large ones."""
    if not command:
        raise ValueError(
            "give the command to run after --, e.g. descentlab check -- python train.py"
        )
    fd, report = tempfile.mkstemp(prefix="descentlab-check-", suffix=".jsonl")
    os.close(fd)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SITE), env.get("PYTHONPATH")]))
    env["DESCENTLAB_CHECK_REPORT"] = report
    env["DESCENTLAB_CHECK_FINETUNING"] = "1" if finetuning else ""
    try:
        try:
            code = subprocess.call(command, env=env)
        except FileNotFoundError:
            raise ValueError(f"cannot run {command[0]!r}: no such program") from None
        entries = _read(Path(report))
    finally:
        Path(report).unlink(missing_ok=True)
    print(summary(entries, code), file=out)
    return code


def _read(path: Path) -> list[dict[str, Any]]:
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue  # a line cut short by a killed process
    return entries


def summary(entries: list[dict[str, Any]], code: int) -> str:
    """The end-of-run summary: optimizers guarded, then each finding on its own line."""
    attached = Counter(e["attached"] for e in entries if "attached" in e)
    findings = [e for e in entries if "kind" in e]
    guarded = ", ".join(f"{n} x{c}" if c > 1 else n for n, c in attached.items()) or "none"
    lines = [f"descentlab check: exit code {code}; optimizers guarded: {guarded}"]
    if not attached:
        lines.append("  no optimizer took a step: nothing was checked")
    elif not findings:
        lines.append("  no pitfall found")
    else:
        lines.append(f"  {len(findings)} finding(s):")
        for f in findings:
            lines.append(
                f"  - [{f['optimizer']}] {f['kind']} (step {f['step']}): {f['param']}: "
                f"{f['detail']}; fix: {f['fix']}"
            )
    return "\n".join(lines)
