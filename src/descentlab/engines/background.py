"""When the default engine compiles: in another process, once the run has shown it pays.

``engine="auto"`` steps every group with the eager engine (:mod:`descentlab.engines.eager`)
from the first step. Compiling a rule costs seconds to a minute of CPU (tens of seconds with
an empty compiler cache on 2 cores), and a compiled kernel saves a few milliseconds per
step: a short script never earns that back. So ``auto`` rents before it buys (the
ski-rental rule): it counts the time the eager engine spends on each kernel's tensors, and
only once that time reaches :func:`compile_after` seconds (about what one cold compile
costs, measured) does it start compiling, in a separate, low-priority Python process that
fills torch's compiler cache (``TORCHINDUCTOR_CACHE_DIR``, shared by every process of the
machine: torchrun ranks, lab workers, the next run) while the eager engine goes on
stepping. When that process has finished, the kernel is loaded from the cache between two
steps (no C++ compiler runs then) and used from that step on. If compiling fails, the
eager engine goes on, after one warning. A run pays at most about twice what the best
choice in hindsight would have paid.

``DESCENTLAB_COMPILE_AFTER`` (seconds) changes the threshold: ``0`` starts compiling at the
first step, a negative value never compiles. A kernel that an earlier process of this
machine compiled (a marker beside the compiler cache says so) is only loaded, which costs
about a second: its threshold is :data:`LOAD_AFTER`. ``engine="compiled"`` compiles at the
first step and waits for it, as before; ``engine="eager"`` never compiles.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

__all__ = ["COMPILE_AFTER", "LOAD_AFTER", "compile_after", "ready", "spent", "started", "wait"]

COMPILE_AFTER = 20.0
"""Seconds of eager stepping after which ``auto`` starts compiling a kernel (see above)."""
LOAD_AFTER = 2.0
"""The same, for a kernel this machine's compiler cache already holds (only loaded)."""

_spent: dict[Any, float] = {}
_procs: dict[Any, subprocess.Popen[bytes]] = {}
_logs: dict[Any, Path] = {}


def compile_after(key: Any = None) -> float:
    """The threshold in force for ``key``: ``DESCENTLAB_COMPILE_AFTER`` if set, else
    :data:`LOAD_AFTER` for a kernel already in the compiler cache, :data:`COMPILE_AFTER`."""
    value = os.environ.get("DESCENTLAB_COMPILE_AFTER")
    if value is None or not value.strip():
        return LOAD_AFTER if key is not None and _marker(key).exists() else COMPILE_AFTER
    try:
        return float(value)
    except ValueError:
        raise ValueError(
            f"DESCENTLAB_COMPILE_AFTER must be a number of seconds, got {value!r}"
        ) from None


def _cache_dir() -> Path:
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    return Path(cache_dir())


def _marker(key: Any) -> Path:
    """Where a finished compile of ``key`` is recorded for later processes (beside the
    compiler cache it filled, named by the key and the torch version)."""
    import torch

    digest = hashlib.sha256(repr((key, torch.__version__)).encode()).hexdigest()[:24]
    return _cache_dir() / "descentlab" / f"{digest}.ok"


def started(key: Any) -> bool:
    """Has a background compile of ``key`` been started in this process?"""
    return key in _procs


def spent(key: Any, seconds: float) -> None:
    """Count ``seconds`` of eager stepping for ``key``; start compiling it once they pay."""
    total = _spent[key] = _spent.get(key, 0.0) + seconds
    if key in _procs:
        return
    threshold = compile_after(key)
    if threshold < 0 or total < threshold:
        return
    from . import compiled

    if key in compiled._FAILED:
        return
    try:
        _start(key)
    except Exception as exc:  # no writable temp dir, no fork...: stay eager, say why once
        _give_up(key, exc)


def _stop_all() -> None:
    """At exit: a compile still running is stopped (no process outlives the user's script)."""
    for proc in _procs.values():
        if proc.poll() is None:
            proc.terminate()
    for folder in _logs.values():
        shutil.rmtree(folder, ignore_errors=True)


atexit.register(_stop_all)


def _start(key: Any) -> None:
    folder = Path(tempfile.mkdtemp(prefix="descentlab-compile-"))
    (folder / "key.pickle").write_bytes(pickle.dumps(key))
    _logs[key] = folder
    with open(folder / "log.txt", "wb") as log:
        _procs[key] = subprocess.Popen(
            [sys.executable, "-m", "descentlab.engines.warm", str(folder / "key.pickle")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # one compiler worker: the training process keeps the cores
            env={
                **os.environ,
                "DESCENTLAB_COMPILE_AFTER": "-1",
                "TORCHINDUCTOR_COMPILE_THREADS": "1",
            },
        )


def ready(key: Any) -> bool:
    """Is the compiled kernel for ``key`` at hand? Loads it (between two steps) once the
    background process has filled the cache; False while it works, or if it failed."""
    from . import compiled

    if key in compiled._KERNELS:
        return True
    proc = _procs.get(key)
    if proc is None or key in compiled._FAILED or proc.poll() is None:
        return False
    folder = _logs.pop(key, None)
    if proc.returncode != 0:
        text = (folder / "log.txt").read_text(errors="replace") if folder else ""
        lines = [line for line in text.splitlines() if line.strip()]
        _give_up(key, RuntimeError(lines[-1] if lines else f"exit code {proc.returncode}"))
        return False
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
    built = compiled.kernel(key)  # from the cache the process filled: no C++ compiler runs
    if built is not None:
        with contextlib.suppress(OSError):  # a read-only cache: later processes compile again
            marker = _marker(key)
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
    return built is not None


def _give_up(key: Any, exc: BaseException) -> None:
    from . import compiled
    from .compiled import brief

    compiled._FAILED[key] = brief(exc, 300)
    warnings.warn(
        f"descentlab: compiling rule {key.rule.name!r} for {key.dtype} {key.device} in the "
        f"background failed ({brief(exc)}); the eager engine goes on running the same rule",
        RuntimeWarning,
        stacklevel=6,
    )


def wait(timeout: float | None = None) -> bool:
    """Wait for every background compile started so far; True if all have finished."""
    for proc in list(_procs.values()):
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    return all(p.poll() is not None for p in _procs.values())
