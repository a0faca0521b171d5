"""Loaded at start-up by the Python that ``descentlab check`` runs: guards every optimizer.

``descentlab check`` puts this folder first on ``PYTHONPATH``; Python imports
``sitecustomize`` by itself. It registers torch's global optimizer step hook, which attaches
:func:`descentlab.guard` to each optimizer at its first step, and writes every finding to the
report file the command named (one JSON line each). A ``sitecustomize`` the environment
already had is run afterwards.

The names both sides agree on come from ``../protocol.py``, read by file path: importing
the package (and torch) only happens where a report is asked for, so a process that inherits
the environment without one is not slowed down. Where the package cannot be imported (an
interpreter without descentlab), Python reports the error and the script runs unguarded.
"""

import importlib.machinery
import importlib.util
import os
import sys
import types

_here = os.path.dirname(os.path.abspath(__file__))


def _protocol() -> types.ModuleType:
    """descentlab's check protocol, executed from its file (not registered as a module)."""
    path = os.path.join(os.path.dirname(_here), "protocol.py")
    spec = importlib.util.spec_from_file_location("_descentlab_check_protocol", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _install() -> None:
    protocol = _protocol()
    report = os.environ.get(protocol.REPORT_ENV)
    if not report:
        return
    from descentlab.diagnostics.check import attach_everywhere

    # --finetuning: every weight tensor is learned; without it, those with evidence only
    attach_everywhere(report, finetuning=True if protocol.watch_every_tensor(os.environ) else None)


def _run_the_environments_own() -> None:
    path = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


try:
    _install()
finally:
    _run_the_environments_own()
