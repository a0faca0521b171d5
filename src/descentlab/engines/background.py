"""When the default engine compiles: off the training thread, once the run has shown it pays.

``engine="auto"`` steps every group with the eager engine (:mod:`descentlab.engines.eager`)
from the first step. Compiling a rule costs seconds to a minute of CPU (tens of seconds with
an empty compiler cache on 2 cores), and a compiled kernel saves a few milliseconds per
step: a short script never earns that back. So ``auto`` rents before it buys (the
ski-rental rule): it counts the time the eager engine spends on each kernel's tensors, and
only once that time reaches :data:`COMPILE_AFTER` seconds (the order of one cold compile,
measured) does it start compiling, in a background thread, while the eager engine goes on
stepping. The kernel is switched to between two steps, once it is ready; until then, and
for good if compiling fails (one warning), the eager engine runs the same rule. A run pays
at most about twice what the best choice in hindsight would have paid.

``DESCENTLAB_COMPILE_AFTER`` (seconds) changes the threshold; ``0`` compiles in the
background at the first step, a negative value never compiles. ``engine="compiled"``
compiles at the first step and waits for it, as before; ``engine="eager"`` never compiles.
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Any

__all__ = ["COMPILE_AFTER", "compile_after", "ready", "spent", "started", "wait"]

COMPILE_AFTER = 20.0
"""Seconds of eager stepping after which ``auto`` starts compiling a kernel (see above)."""

_spent: dict[Any, float] = {}
_threads: dict[Any, threading.Thread] = {}
_lock = threading.Lock()


def compile_after() -> float:
    """The threshold in force: ``DESCENTLAB_COMPILE_AFTER`` if set, else :data:`COMPILE_AFTER`."""
    value = os.environ.get("DESCENTLAB_COMPILE_AFTER")
    if value is None or not value.strip():
        return COMPILE_AFTER
    try:
        return float(value)
    except ValueError:
        raise ValueError(
            f"DESCENTLAB_COMPILE_AFTER must be a number of seconds, got {value!r}"
        ) from None


def ready(key: Any) -> bool:
    """Is the compiled kernel for ``key`` built (and not retired)?"""
    from . import compiled

    return key in compiled._KERNELS


def started(key: Any) -> bool:
    """Has a background compile of ``key`` been started in this process?"""
    return key in _threads


def spent(key: Any, seconds: float) -> None:
    """Count ``seconds`` of eager stepping for ``key``; start compiling it once they pay."""
    total = _spent[key] = _spent.get(key, 0.0) + seconds
    threshold = compile_after()
    if threshold < 0 or total < threshold or key in _threads:
        return
    from . import compiled

    if key in compiled._FAILED:
        return
    with _lock:
        if key in _threads:
            return
        thread = threading.Thread(
            target=_build, args=(key,), name="descentlab-compile", daemon=True
        )
        _threads[key] = thread
    thread.start()


def _build(key: Any) -> None:
    from . import compiled

    try:
        kernel = compiled.Kernel(key, quiet=False)
    except Exception as exc:
        compiled._FAILED[key] = f"{exc!s:.300}"
        try:
            warnings.warn(
                f"descentlab: compiling rule {key.rule.name!r} for {key.dtype} {key.device} "
                f"failed ({exc!s:.200}); the eager engine goes on running the same rule",
                RuntimeWarning,
                stacklevel=2,
            )
        except Exception:
            pass
        return
    compiled._KERNELS[key] = kernel  # picked up by the next step
    compiled.compiles += 1


def wait(timeout: float | None = None) -> bool:
    """Wait for every background compile started so far; True if all have finished."""
    for thread in list(_threads.values()):
        thread.join(timeout)
    return not any(t.is_alive() for t in _threads.values())
