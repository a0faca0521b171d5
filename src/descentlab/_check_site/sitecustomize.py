"""Loaded at start-up by the Python that ``descentlab check`` runs: guards every optimizer.

``descentlab check`` puts this folder first on ``PYTHONPATH``; Python imports
``sitecustomize`` by itself. It registers torch's global optimizer step hook, which attaches
:func:`descentlab.guard` to each optimizer at its first step, and writes every finding to the
file named by ``DESCENTLAB_CHECK_REPORT`` as it happens (one JSON line each). A
``sitecustomize`` the environment already had is run afterwards.
"""

import importlib.machinery
import importlib.util
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))


def _install() -> None:
    report = os.environ.get("DESCENTLAB_CHECK_REPORT")
    if not report:
        return
    from descentlab.guards import attach_everywhere

    # --finetuning watches every weight tensor; without it, the default (large tensors only)
    attach_everywhere(
        report, finetuning=True if os.environ.get("DESCENTLAB_CHECK_FINETUNING") else None
    )


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
