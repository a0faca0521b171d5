"""``descentlab check -- python train.py [args]``: run an unmodified training script with
:func:`descentlab.guard` on every optimizer it creates, then summarize the findings.

Both halves of the command live here. In this process, :func:`run` starts the script in its
own process, exactly as given, with the exit code passed through, and :func:`summary` reads
the findings back. In the script's process, the start-up hook (``_site/sitecustomize.py``,
imported by Python itself from ``PYTHONPATH``) calls :func:`attach_everywhere`, which
attaches the guard to each optimizer at its first step and writes each finding as it is
made. What the two sides exchange is defined in :mod:`~descentlab.diagnostics.protocol`.
"""

from __future__ import annotations

import functools
import itertools
import os
import subprocess
import sys
import tempfile
import weakref
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

import torch

from . import protocol, provenance
from .guards import Finding, guard

__all__ = ["SITE", "attach_everywhere", "run", "summary"]

SITE = Path(__file__).resolve().parent / protocol.SITE_FOLDER
"""The folder of the start-up hook, put first on the script's ``PYTHONPATH``."""


def run(command: list[str], out: TextIO = sys.stderr, *, finetuning: bool = False) -> int:
    """Run ``command`` with every optimizer guarded; print the summary to ``out``; return
    the command's exit code. ``finetuning``: treat every weight tensor as learned
    (``guard(finetuning=True)``), not only those with evidence."""
    if not command:
        raise ValueError(
            "give the command to run after --, e.g. descentlab check -- python train.py"
        )
    fd, report = tempfile.mkstemp(prefix=protocol.REPORT_PREFIX, suffix=protocol.REPORT_SUFFIX)
    os.close(fd)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SITE), env.get("PYTHONPATH")]))
    env[protocol.REPORT_ENV] = report
    env[protocol.WATCH_EVERY_TENSOR_ENV] = "1" if finetuning else ""
    try:
        try:
            code = subprocess.call(command, env=env)
        except FileNotFoundError:
            raise ValueError(f"cannot run {command[0]!r}: no such program") from None
        except PermissionError:
            raise ValueError(
                f"cannot run {command[0]!r}: permission denied (not executable? "
                f"e.g. descentlab check -- python {command[0]})"
            ) from None
        except OSError as exc:
            raise ValueError(f"cannot run {command[0]!r}: {exc.strerror or exc}") from None
        entries = protocol.parse_report(Path(report).read_text(encoding="utf-8"))
    finally:
        Path(report).unlink(missing_ok=True)
    # A command killed by a signal: the status a shell gives it (128 + the signal: 137 for
    # SIGKILL), where Python's negative code would leave this process as 256 - 9 = 247.
    if code < 0:
        print(summary(entries, 128 - code, signal=-code), file=out)
        return 128 - code
    print(summary(entries, code), file=out)
    return code


def summary(entries: list[dict[str, Any]], code: int, signal: int | None = None) -> str:
    """The end-of-run summary: optimizers guarded, then each finding on its own line, then
    advice. A problem found on several optimizers is one line naming them (``[AdamW #1-#20]``:
    the instances in the order they were guarded). ``signal``: the signal that killed the
    command (its ``code`` is then 128 + it)."""
    attached = [e for e in entries if protocol.ATTACHED in e]
    number = {e.get(protocol.INSTANCE): n for n, e in enumerate(attached, 1)}
    classes = Counter(e[protocol.ATTACHED] for e in attached)
    guarded = ", ".join(f"{n} x{c}" if c > 1 else n for n, c in classes.items()) or "none"
    how = f"exit code {code}"
    if signal is not None:
        import signal as signals

        try:
            how += f" (killed by {signals.Signals(signal).name})"
        except ValueError:
            how += f" (killed by signal {signal})"
    lines = [f"descentlab check: {how}; optimizers guarded: {guarded}"]
    found = [e for e in entries if protocol.is_finding(e)]
    findings = _grouped([e for e in found if not e.get(protocol.ADVICE)], number)
    advice = _grouped([e for e in found if e.get(protocol.ADVICE)], number)
    if not attached and not any(protocol.LOADED in e for e in entries):
        lines.append(
            "  the guard did not load in the command's Python (run with -E or -I, or an "
            "interpreter without descentlab installed): nothing was checked"
        )
    elif not attached:
        lines.append("  no optimizer took a step: nothing was checked")
    elif not findings:
        lines.append("  no pitfall found")
    else:
        lines.append(f"  {len(findings)} finding(s):")
        lines.extend(_line(f, who) for f, who in findings)
    if advice:
        lines.append("  advice (not a pitfall):")
        lines.extend(_line(f, who) for f, who in advice)
    return "\n".join(lines)


def _grouped(
    entries: list[dict[str, Any]], number: dict[Any, int]
) -> list[tuple[dict[str, Any], str]]:
    """One (first entry, "Class #i-#j") per problem: entries of one kind on the same
    parameter of optimizers of one class are one problem."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for e in entries:
        groups.setdefault((e["kind"], e.get("param"), e[protocol.OPTIMIZER]), []).append(e)
    out = []
    for same in groups.values():
        who = same[0][protocol.OPTIMIZER]
        if len(number) > 1:
            found = sorted(
                {number[e[protocol.INSTANCE]] for e in same if e.get(protocol.INSTANCE) in number}
            )
            who += " " + _ranges(found) if found else ""
        out.append((same[0], who))
    return out


def _ranges(numbers: list[int]) -> str:
    """``[1, 2, 3, 5]`` as ``"#1-#3, #5"``."""
    parts: list[str] = []
    start = prev = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(f"#{start}" if start == prev else f"#{start}-#{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(parts)


def _line(f: dict[str, Any], who: str) -> str:
    return (
        f"  - [{who}] {f['kind']} (step {f['step']}): {f['param']}: {f['detail']}; fix: {f['fix']}"
    )


_ATTACHED: weakref.WeakSet[torch.optim.Optimizer] = weakref.WeakSet()
"""The optimizers already guarded. A set, not a map to their guards: a guard refers to its
optimizer, and a value of a weak-keyed map that refers to its key keeps it alive for ever
(a sweep of 20 models grew from 380 MiB to 1.2 GiB). Each guard lives as long as its
optimizer, through the step hooks it registers on it."""


def attach_everywhere(report: str | os.PathLike[str], *, finetuning: bool | None = None) -> Any:
    """Guard every optimizer of this process from its first step on (``descentlab check``).

    Registers torch's global step pre-hook, and watches ``load_state_dict`` (the evidence of
    fine-tuning: :func:`~.provenance.watch_loads`); each finding is appended to ``report`` as
    one JSON line as soon as it is made, so a script that crashes or exits early loses none.
    Returns a handle whose ``remove()`` undoes both.
    """
    path = os.fspath(report)
    count = itertools.count(1)
    pid = os.getpid()

    def record(name: str, instance: str, finding: Finding) -> None:
        protocol.append(path, protocol.finding_entry(asdict(finding), name, instance))

    def on_step(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if optimizer in _ATTACHED:
            return
        handle = guard(optimizer, finetuning=finetuning, warn=False)
        _ATTACHED.add(optimizer)
        instance, name = f"{pid}:{next(count)}", type(optimizer).__name__
        protocol.append(path, protocol.attached_entry(name, instance))
        for finding in [*handle.findings, *handle.advice]:  # found at attach (the settings)
            record(name, instance, finding)
        # the class name, not the optimizer: the guard must not refer to it (see _watch)
        handle.on_finding = functools.partial(record, name, instance)

    from torch.optim.optimizer import register_optimizer_step_pre_hook

    loads = provenance.watch_loads()
    hook = register_optimizer_step_pre_hook(on_step)
    protocol.append(path, protocol.loaded_entry(pid))
    return _Handles([hook, loads])


class _Handles:
    """Several removable handles as one."""

    def __init__(self, handles: list[Any]) -> None:
        self._handles = handles

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
