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
        if hasattr(os, "fchmod"):  # mkstemp's 0600: give the mode open() would have given
            os.fchmod(fd, 0o666 & ~_umask())
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


def _umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux);
    elsewhere set and restored at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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


MARKER = ".descentlab"
"""The file that says a folder is one of descentlab's reports (written when it is made)."""


def own_folder(out: Any, kind: str, *, older: tuple[str, ...] = ()) -> Path:
    """The report folder ``out`` made ready for writing: a new folder, an empty one, or one
    that a descentlab ``kind`` report wrote (which then resumes). Anything else is refused
    with a ValueError, so that nothing a user owns is ever written over: an empty name (an
    unset ``$OUTDIR`` would otherwise mean the current folder), a file, a folder holding
    other files, or another kind of report. ``older``: names that mark a report made before
    the marker existed (``runs.jsonl``)."""
    if not isinstance(out, str | os.PathLike) or not str(out).strip():
        raise ValueError(f"the output folder name is empty ({out!r}); give a folder to write in")
    folder = Path(out)
    marker = folder / MARKER
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"output folder {str(folder)!r} is a file; give a folder")
    if folder.is_dir():
        # Hidden names are left out: descentlab's own lock and temporary files (another
        # process starting on the same new folder), never a file it would write over.
        names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        if marker.exists():
            names.append(MARKER)
        if MARKER in names:
            try:
                made_by = json.loads(marker.read_text(encoding="utf-8")).get("kind")
            except (OSError, ValueError, AttributeError):
                made_by = None
            if made_by not in (kind, None):
                raise ValueError(
                    f"output folder {str(folder)!r} holds a descentlab {made_by} report; "
                    f"give another folder for {kind}"
                )
        elif names and not any(name in names for name in older):
            shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
            raise ValueError(
                f"output folder {str(folder)!r} already holds files descentlab did not write "
                f"({shown}); give a new or empty folder (a descentlab report folder resumes)"
            )
    folder.mkdir(parents=True, exist_ok=True)
    if not marker.exists():
        write_json(marker, {"kind": kind})
    return folder
