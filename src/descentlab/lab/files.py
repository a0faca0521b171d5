"""Writing result files so that a crash never leaves half of one: one definition for the lab
and ``reproduce``."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def write_atomic(path: Path, text: str) -> None:
    """Write atomically and durably: a temporary file in the same folder, fsynced, renamed
    over the target, and the folder fsynced, so a crash leaves the old file or the new one.
    Concurrent writers each use their own temporary file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def strict(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON's ``null``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict(x) for k, x in value.items()}
    if isinstance(value, list | tuple):
        return [strict(x) for x in value]
    return value


def write_json(path: Path, value: Any) -> None:
    """Strict JSON (no bare ``NaN``/``Infinity``: they become ``null``), written atomically."""
    write_atomic(path, json.dumps(strict(value), indent=1, default=str, allow_nan=False))
