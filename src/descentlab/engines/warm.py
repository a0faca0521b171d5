"""``python -m descentlab.engines.warm KEY_PICKLE``: compile one kernel, filling the cache.

The default engine's background compile (:mod:`descentlab.engines.background`) runs this in a
separate process that only gets the CPU time the training process leaves, so the training
process never waits for the compiler. It also writes the kernel file: the module inductor
generated for the kernel and the names of its inputs, which the training process executes
in a thread once this process has exited with 0 (no tracing, no C++ compiler: the shared
library is in the cache).
"""

from __future__ import annotations

import pickle
import sys
import warnings
from pathlib import Path
from typing import Any


def generated_module(before: int) -> str | None:
    """The text of the one module with a ``call`` that inductor loaded since it held
    ``before`` modules, or None (none, several, or a torch that keeps them elsewhere)."""
    try:
        from torch._inductor.codecache import PyCodeCache

        modules: list[Any] = list(PyCodeCache.modules)[before:]
        found = [m for m in modules if callable(getattr(m, "call", None))]
        if len(found) != 1 or not getattr(found[0], "__file__", None):
            return None
        return Path(found[0].__file__).read_text()
    except Exception:  # internals of another torch: the kernel is loaded from the cache
        return None


def _count() -> int:
    try:
        from torch._inductor.codecache import PyCodeCache

        return len(PyCodeCache.modules)
    except Exception:
        return 0


def main(argv: list[str]) -> int:
    with open(argv[0], "rb") as f:
        key = pickle.load(f)
    from descentlab.engines.background import brief, save
    from descentlab.engines.compiled import Kernel

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            before = _count()
            built = Kernel(key)
            # Only a CPU kernel is loaded from its module: elsewhere the call inductor wraps
            # it in also aligns the inputs.
            code = generated_module(before) if key.device.type == "cpu" else None
            save(key, built.sources if code is not None else None, code)
    except Exception as exc:  # reported to the parent through the last line of the log
        print(brief(exc, 300), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
