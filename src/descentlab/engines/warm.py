"""``python -m descentlab.engines.warm KEY_PICKLE``: compile one kernel, filling the cache.

The default engine's background compile (:mod:`descentlab.engines.background`) runs this in a
separate, low-priority process, so the training process never waits for the compiler: it
loads the kernel from the shared compiler cache once this process has exited with 0.
"""

from __future__ import annotations

import os
import pickle
import sys
import warnings


def main(argv: list[str]) -> int:
    with open(argv[0], "rb") as f:
        key = pickle.load(f)
    if hasattr(os, "nice"):
        os.nice(10)  # the training process comes first (19 would starve on a busy machine)
    from descentlab.engines.background import brief
    from descentlab.engines.compiled import Kernel

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Kernel(key)
    except Exception as exc:  # reported to the parent through the last line of the log
        print(brief(exc, 300), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
