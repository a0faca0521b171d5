"""Loaded at start-up by the Python that ``descentlab check`` runs: guards every optimizer.

``descentlab check`` puts this folder first on ``PYTHONPATH``; Python imports
``sitecustomize`` by itself. It registers torch's global optimizer step hook, which attaches
:func:`descentlab.guard` to each optimizer at its first step, and writes every finding to the
file named by ``DESCENTLAB_CHECK_REPORT`` as it happens (one JSON line each). A
``sitecustomize`` the environment already had is imported afterwards.
"""

import contextlib
import importlib
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))


def _install() -> None:
    report = os.environ.get("DESCENTLAB_CHECK_REPORT")
    if not report:
        return
    from descentlab.guards import attach_everywhere

    attach_everywhere(report)


try:
    _install()
finally:
    # the environment's own sitecustomize, if any, still runs
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.modules.pop("sitecustomize", None)
    with contextlib.suppress(ImportError):
        importlib.import_module("sitecustomize")
