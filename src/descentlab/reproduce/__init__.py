"""``descentlab reproduce``: every claim of the seed document as a measured experiment.

Each claim's criteria are written in its definition, before anything runs; the verdict is
computed from the measured figures alone. Results are saved per claim (atomically) as they
finish, so an interrupted run resumes with the claims it has not done yet.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..lab.errors import LabError
from . import adaptive, generalization, momentum, pitfalls, properties, regimes, seed_code
from .base import (
    FAILS,
    HOLDS,
    PARTLY,
    STYLE,
    Claim,
    Context,
    section_html,
    section_markdown,
    write_json,
)
from .base import verdict as judge

CLAIMS: tuple[Claim, ...] = (
    regimes.CLAIM,
    momentum.RAVINE,
    momentum.NOISE,
    momentum.SADDLE,
    adaptive.SCALES,
    adaptive.COMPOSITION,
    adaptive.BIAS,
    generalization.CLAIM,
    pitfalls.FINETUNE,
    pitfalls.ZERO_GRAD,
    pitfalls.STALE,
    pitfalls.DECAY,
    seed_code.CLAIM,
    properties.CLAIM,
)
BY_KEY = {c.key: c for c in CLAIMS}

__all__ = ["BY_KEY", "CLAIMS", "FAILS", "HOLDS", "PARTLY", "reproduce"]


def _select(only: list[str] | None) -> list[Claim]:
    if not only:
        return list(CLAIMS)
    unknown = [k for k in only if k not in BY_KEY]
    if unknown:
        raise LabError(f"unknown claim {unknown[0]!r}; choose from: {', '.join(BY_KEY)}")
    return [BY_KEY[k] for k in only]


def reproduce(
    out: str | Path = "descentlab-reproduce",
    quick: bool = False,
    only: list[str] | None = None,
    seeds: int | None = None,
    progress: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Run the claims (all, or ``only``), write ``report.md`` and ``index.html`` in ``out``."""
    claims = _select(only)
    folder = Path(out)
    try:
        (folder / "claims").mkdir(parents=True, exist_ok=True)
        (folder / ".write-test").write_text("ok")
        (folder / ".write-test").unlink()
    except OSError as exc:
        raise LabError(f"cannot write to output folder {str(folder)!r}: {exc.strerror}") from None
    seeds = seeds if seeds is not None else (1 if quick else 3)
    if seeds < 1:
        raise LabError(f"seeds must be >= 1, got {seeds}")
    ctx = Context(folder, quick, seeds)
    config = {"quick": quick, "seeds": seeds, "version": __version__}
    results: dict[str, dict[str, Any]] = {}
    for claim in claims:
        path = folder / "claims" / f"{claim.key}.json"
        if path.exists():
            saved = json.loads(path.read_text())
            if saved.get("config") == config:
                results[claim.key] = saved
                progress(f"{claim.key}: reused")
                continue
        progress(f"{claim.key}: measuring")
        start = time.perf_counter()
        torch.manual_seed(0)
        m = claim.measure(ctx)
        verdict, met = judge(claim.criteria, m.figures)
        result = {
            "key": claim.key,
            "config": config,
            "figures": m.figures,
            "met": met,
            "verdict": verdict,
            "plots": [(c, Path(p).relative_to(folder).as_posix()) for c, p in m.plots],
            "table": m.table,
            "remarks": m.remarks,
            "seconds": time.perf_counter() - start,
        }
        write_json(path, result)
        results[claim.key] = json.loads(path.read_text())
        progress(f"{claim.key}: {verdict} ({result['seconds']:.1f} s)")
    _write_report(folder, claims, results, config)
    return results


def _with_evidence(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The Key Properties table's "best for" cells, with the verdict of the claim they cite."""
    table = results.get("key-properties", {}).get("table")
    if not table:
        return results
    header, rows = table
    col = header.index("best for: evidence")
    new_rows = []
    for row in rows:
        key = row[col].removeprefix("see '").removesuffix("'")
        if key in results:
            row = [*row[:col], f"{key}: {results[key]['verdict']}", *row[col + 1 :]]
        new_rows.append(row)
    cited = {**results["key-properties"], "table": [header, new_rows]}
    return {**results, "key-properties": cited}


def _write_report(
    folder: Path, claims: list[Claim], results: dict[str, dict[str, Any]], config: dict[str, Any]
) -> None:
    results = _with_evidence(results)
    versions = {
        "descentlab": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    head = (
        f"Mode: {'--quick' if config['quick'] else 'full'}; seeds 0..{config['seeds'] - 1}; "
        + "; ".join(f"{k} {v}" for k, v in versions.items())
    )
    summary = ["| claim | verdict | seconds |", "|---|---|---|"]
    summary += [
        f"| [{c.title}](#{c.key}) | {results[c.key]['verdict']} | {results[c.key]['seconds']:.1f} |"
        for c in claims
    ]
    md = [
        "# The seed's claims, measured",
        "",
        head,
        "",
        "Each verdict follows from the figures beside it and criteria fixed in the code "
        "before the run: all met = holds, none = does not hold, some = holds only under the "
        "stated conditions.",
        "",
        *summary,
        "",
    ]
    md += [section_markdown(c, results[c.key]) for c in claims]
    (folder / "report.md.tmp").write_text("\n".join(md), encoding="utf-8")
    (folder / "report.md.tmp").replace(folder / "report.md")
    rows = "".join(
        f'<tr><td><a href="#{c.key}">{c.title}</a></td><td>{results[c.key]["verdict"]}</td></tr>'
        for c in claims
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>The seed's claims, "
        f"measured</title><style>{STYLE}</style></head><body><h1>The seed's claims, "
        f"measured</h1><p>{head}</p><table><tr><th>claim</th><th>verdict</th></tr>{rows}"
        "</table>"
        + "".join(section_html(c, results[c.key], folder) for c in claims)
        + "</body></html>"
    )
    (folder / "index.html.tmp").write_text(page, encoding="utf-8")
    (folder / "index.html.tmp").replace(folder / "index.html")
    write_json(
        folder / "config.json", {**config, "versions": versions, "claims": [c.key for c in claims]}
    )
