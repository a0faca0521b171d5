"""The ``descentlab check`` protocol, defined once: how the command and the guarded script talk.

``descentlab check`` (:mod:`~descentlab.diagnostics.check`) runs the user's command in a
child process and tells it, through environment variables, where to write; the child's
start-up hook (``_site/sitecustomize.py``) guards every optimizer and appends one JSON line
per event to that report file; the command reads the file back when the child exits.
Everything both sides must agree on lives here.

This module is read by the start-up hook before anything else runs in the user's process,
by file path and without importing the package: it must import nothing but the standard
library, and little of it.

Example:
    >>> entry = finding_entry({"kind": "lr_jump", "step": 3}, "SGD", "41:1")
    >>> entry
    {'kind': 'lr_jump', 'step': 3, 'optimizer': 'SGD', 'instance': '41:1'}
    >>> is_finding(entry), is_finding(attached_entry("SGD", "41:1"))
    (True, False)
    >>> parse_report(dumps(attached_entry("SGD", "41:1")) + "\\n" + '{"cut sh')  # cut short
    [{'attached': 'SGD', 'instance': '41:1'}]
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "ADVICE",
    "ATTACHED",
    "FINDING",
    "INSTANCE",
    "LOADED",
    "OPTIMIZER",
    "REPORT_ENV",
    "REPORT_PREFIX",
    "REPORT_SUFFIX",
    "SITE_FOLDER",
    "WATCH_EVERY_TENSOR_ENV",
    "append",
    "attached_entry",
    "dumps",
    "finding_entry",
    "is_finding",
    "loaded_entry",
    "parse_report",
    "watch_every_tensor",
]

REPORT_ENV = "DESCENTLAB_CHECK_REPORT"
"""The report file the child appends to; the hook does nothing where it is unset or empty."""
WATCH_EVERY_TENSOR_ENV = "DESCENTLAB_CHECK_FINETUNING"
"""Non-empty: ``descentlab check --finetuning`` (the guard watches every weight tensor)."""

SITE_FOLDER = "_site"
"""The folder, beside this module, holding the start-up hook; first on the child's
``PYTHONPATH``."""
REPORT_PREFIX, REPORT_SUFFIX = "descentlab-check-", ".jsonl"
"""The report file's name around the temporary part."""

LOADED = "loaded"
"""Key of the entry a process writes when its hook is installed (its pid): a report without
one means the guard never ran there (``python -E``, or an interpreter without descentlab).
"""
ATTACHED = "attached"
"""Key of the entry written when an optimizer is guarded: its class name."""
FINDING = "kind"
"""Key present in every finding entry (the fields of a guard's ``Finding``)."""
OPTIMIZER = "optimizer"
"""Key added to a finding entry: the class name of the optimizer it was found on."""
INSTANCE = "instance"
"""Key of attached and finding entries: which optimizer (``"<pid>:<n>"``, the n-th guarded
in that process), so that a summary tells the instances of one class apart."""
ADVICE = "advice"
"""Key of a finding entry, true where it is advice rather than a pitfall."""


def watch_every_tensor(environ: dict[str, str] | Any) -> bool:
    """Whether the child was asked to watch every weight tensor (``--finetuning``)."""
    return bool(environ.get(WATCH_EVERY_TENSOR_ENV))


def loaded_entry(pid: int) -> dict[str, Any]:
    """The entry saying the guard's hook is installed in process ``pid``."""
    return {LOADED: pid}


def attached_entry(optimizer: str, instance: str) -> dict[str, Any]:
    """The entry saying an optimizer of class ``optimizer`` is now guarded, as ``instance``."""
    return {ATTACHED: optimizer, INSTANCE: instance}


def finding_entry(finding: dict[str, Any], optimizer: str, instance: str) -> dict[str, Any]:
    """The entry of one finding (a ``Finding`` as a dict) on optimizer ``instance`` of class
    ``optimizer``."""
    return {**finding, OPTIMIZER: optimizer, INSTANCE: instance}


def is_finding(entry: dict[str, Any]) -> bool:
    """Whether a report entry is a finding (else an attachment)."""
    return FINDING in entry


def dumps(entry: dict[str, Any]) -> str:
    """One report line (without its newline)."""
    return json.dumps(entry)


def append(report: str, entry: dict[str, Any]) -> None:
    """Append ``entry`` to the report at once: a script that crashes later loses nothing."""
    with open(report, "a", encoding="utf-8") as fh:
        fh.write(dumps(entry) + "\n")


def parse_report(text: str) -> list[dict[str, Any]]:
    """The entries of a report; a line cut short by a killed process is left out."""
    entries = []
    for line in text.splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries
