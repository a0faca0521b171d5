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
from pathlib import Path
from typing import Any

__all__ = [
    "COMPILE_AFTER",
    "LOAD_AFTER",
    "brief",
    "compile_after",
    "finished",
    "record",
    "spent",
    "wait",
]

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


def brief(exc: BaseException, limit: int = 200) -> str:
    """An exception as one short line for a warning (torch's compiler errors span many)."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def spent(key: Any, seconds: float) -> str | None:
    """Count ``seconds`` of eager stepping for ``key``; start compiling it once they pay.
    Returns why a compile could not be started (the caller warns), else None."""
    total = _spent[key] = _spent.get(key, 0.0) + seconds
    if key in _procs:
        return None
    threshold = compile_after(key)
    if threshold < 0 or total < threshold:
        return None
    try:
        _start(key)
    except Exception as exc:  # no writable temp dir, no fork...: the eager engine goes on
        _procs[key] = None  # type: ignore[assignment]  # never tried again
        return brief(exc)
    return None


def _stop_all() -> None:
    """At exit: a compile still running is stopped (no process outlives the user's script)."""
    for proc in _procs.values():
        if proc is not None and proc.poll() is None:
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


def finished(key: Any) -> tuple[bool, str] | None:
    """``(True, "")`` once the background compile of ``key`` has filled the cache,
    ``(False, why)`` if it failed, None while it runs (or if none was started). Reported
    once: the caller then loads the kernel from the cache, or gives up on it."""
    proc = _procs.get(key)
    if proc is None or proc.poll() is None or key not in _logs:
        return None
    folder = _logs.pop(key)
    text = (folder / "log.txt").read_text(errors="replace")
    shutil.rmtree(folder, ignore_errors=True)
    if proc.returncode != 0:
        lines = [line for line in text.splitlines() if line.strip()]
        return False, lines[-1] if lines else f"exit code {proc.returncode}"
    return True, ""


def record(key: Any) -> None:
    """Note beside the compiler cache that it holds ``key`` (later processes load sooner)."""
    with contextlib.suppress(OSError):  # a read-only cache: later processes compile again
        marker = _marker(key)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()


def wait(timeout: float | None = None) -> bool:
    """Wait for every background compile started so far; True if all have finished."""
    procs = [p for p in _procs.values() if p is not None]
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    return all(p.poll() is not None for p in procs)
