"""The lab's store of finished runs: ``runs.jsonl`` in the output folder, resumable.

Every finished run is appended to ``runs.jsonl`` (one JSON object per line, flushed and
fsynced), so an interrupted sweep loses no finished run and resumes where it stopped.
Runs are keyed by a hash of their configuration (:attr:`~descentlab.lab.training.RunSpec.id`);
the first record of a run id wins, so a run recorded twice reads back as it was first stored.

The file is strict JSON: a non-finite number (a diverged loss) is written as the string
``"NaN"``, ``"Infinity"`` or ``"-Infinity"`` and read back as that float (:func:`to_json`,
:func:`from_json`). A line that cannot be read is skipped with one warning, and every other
run is kept; the file is never cut. Appends happen under a lock (``.descentlab.lock`` in the
folder, :func:`folder_lock`), after a fresh look at the file, so several processes writing
into one folder never record a run twice.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: no cross-process lock
    fcntl = None  # type: ignore[assignment]

from .training import Record

__all__ = ["Store", "folder_lock", "from_json", "to_json"]

_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def to_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``"NaN"``, ``"Infinity"``..."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if _finite_numbers(value):  # a curve: copied as it is, at C speed
            return list(value)
        return [to_json(v) for v in value]
    return value


def from_json(value: Any) -> Any:
    """The inverse of :func:`to_json`."""
    if isinstance(value, str):
        return _NON_FINITE.get(value, value)
    if isinstance(value, dict):
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        if _finite_numbers(value):
            return value
        return [from_json(v) for v in value]
    return value


def _finite_numbers(values: list[Any] | tuple[Any, ...]) -> bool:
    """Whether ``values`` holds only numbers whose sum is finite (then each one is: a NaN
    or an infinity makes the sum NaN or infinite; a string or a container raises)."""
    try:
        return math.isfinite(sum(values, 0.0))
    except TypeError:
        return False


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` shared by every process writing into it."""
    with (folder / ".descentlab.lock").open("a") as f:
        if fcntl is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _kind(annotation: Any) -> tuple[type, ...]:
    """The JSON types a field of :class:`Record` may hold, from its annotation."""
    text = str(annotation)
    for prefix, kinds in (("list", (list,)), ("dict", (dict,)), ("bool", (bool,))):
        if text.startswith(prefix):
            return kinds
    return {"int": (int,), "str": (str,)}.get(text, (int, float))  # float: an int is fine


_KINDS = {f.name: _kind(f.type) for f in fields(Record)}


def well_typed(row: dict[str, Any]) -> bool:
    """Whether every field of a run record (as :func:`from_json` reads it) has its type: a
    record with a list where a number belongs, valid JSON or not, would break the report on
    every rerun, so it is skipped and its run done again. Fields a record lacks (runs
    recorded by older versions) are fine."""
    for name, kinds in _KINDS.items():
        if name not in row:
            continue
        value: Any = row[name]
        if isinstance(value, bool) != (kinds == (bool,)) or not isinstance(value, kinds):
            return False
        if isinstance(value, list) and not all(
            isinstance(x, int | float | list | dict) and not isinstance(x, bool) for x in value
        ):
            return False
    return True


class Store:
    """``runs.jsonl`` in the output folder: append-only, one finished run per line."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "runs.jsonl"
        self.done: dict[str, dict[str, Any]] = {}
        self._offset = 0  # bytes of the file already read

    def load(self) -> dict[str, dict[str, Any]]:
        """Finished runs by id, read from the start; unreadable lines are skipped."""
        self.done, self._offset = {}, 0
        return dict(self.refresh())

    def refresh(self) -> dict[str, dict[str, Any]]:
        """Read the lines appended since the last look; returns every finished run by id.

        Only complete lines are read: a line still being written is read next time. A line
        that is not a run record is skipped, and one warning says how many were.
        """
        if not self.path.exists():
            return self.done
        with self.path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        bad = 0
        for line in data[:end].split(b"\n")[:-1]:
            try:
                row = json.loads(line)
                if not isinstance(row, dict) or not isinstance(row.get("id"), str):
                    raise ValueError("not a run record")
                if not isinstance(row.get("spec"), dict) or not well_typed(from_json(row)):
                    raise ValueError("not a run record")
            except ValueError:
                bad += bool(line.strip())
                continue
            self.done.setdefault(row["id"], from_json(row))  # the first record of a run wins
        if bad:
            warnings.warn(
                f"{self.path}: skipped {bad} unreadable line(s); every other run was kept",
                RuntimeWarning,
                stacklevel=2,
            )
        self._offset += end
        return self.done

    def append(self, record: Record) -> dict[str, Any]:
        """Record a finished run, unless another process recorded it meanwhile."""
        return self.append_many([record])[0]

    def append_many(self, records: list[Record]) -> list[dict[str, Any]]:
        """Record finished runs (each unless another process recorded it meanwhile) under
        one lock and one ``fsync``; their rows, as a later :meth:`load` reads them."""
        texts = [
            json.dumps(to_json({f.name: getattr(r, f.name) for f in fields(r)}), allow_nan=False)
            + "\n"
            for r in records
        ]
        rows: list[dict[str, Any]] = []
        with folder_lock(self.folder):
            done = self.refresh()
            new: dict[str, str] = {}
            for record, text in zip(records, texts, strict=True):
                if record.id not in done and record.id not in new:
                    new[record.id] = text
            if new:
                self._write("".join(new.values()))
            for record, text in zip(records, texts, strict=True):
                row = done.get(record.id)
                if row is None:
                    row = done[record.id] = from_json(json.loads(text))
                rows.append(row)
        return rows

    def _write(self, text: str) -> None:
        """Append complete lines, durably; lines this store wrote are not read back."""
        with self.path.open("a+b") as f:
            end = f.seek(0, os.SEEK_END)
            if end > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a torn line from a killed writer: end it there
                    text = "\n" + text
            f.seek(0, os.SEEK_END)
            data = text.encode("utf-8")
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if end == self._offset:  # nothing unread before them: skip them on the next look
            self._offset = end + len(data)
        else:  # a line ended here, or another process's: read (and report) them now
            self.refresh()
