"""The machinery of ``descentlab reproduce``: claims, criteria written before the run,
measurements, verdicts computed from the measured figures, and the report.

A :class:`Claim` carries the seed's words, the experiment, and its :class:`Criterion` list.
Criteria are functions of the measured figures, defined with the claim (before anything
runs); the verdict is derived from them alone:

* every criterion met: **holds**;
* none met: **does not hold**;
* some met: **holds only under the stated conditions** (the report lists which).
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOLDS = "holds"
FAILS = "does not hold"
PARTLY = "holds only under the stated conditions"

Figures = dict[str, float]


@dataclass(frozen=True)
class Criterion:
    """One measurable condition: ``text`` says it in words, ``test`` decides it."""

    text: str
    test: Callable[[Figures], bool]

    def met(self, figures: Figures) -> bool:
        try:
            return bool(self.test(figures))
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            return False  # a figure the criterion needs was not measured


@dataclass
class Measurement:
    """What an experiment produced: named figures, plots, optional table and remarks."""

    figures: Figures
    plots: list[tuple[str, Path]] = field(default_factory=list)
    table: tuple[list[str], list[list[str]]] | None = None
    remarks: list[str] = field(default_factory=list)


@dataclass
class Context:
    """Where an experiment writes its plots, and how much compute it may spend."""

    folder: Path
    quick: bool
    seeds: int

    def plot_path(self, name: str) -> Path:
        path = self.folder / "plots" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


@dataclass(frozen=True)
class Claim:
    key: str
    title: str
    quote: str
    experiment: str
    criteria: tuple[Criterion, ...]
    measure: Callable[[Context], Measurement]


def verdict(criteria: tuple[Criterion, ...], figures: Figures) -> tuple[str, list[bool]]:
    """The verdict that follows from the figures, and which criteria were met."""
    met = [c.met(figures) for c in criteria]
    if all(met):
        return HOLDS, met
    if not any(met):
        return FAILS, met
    return PARTLY, met


def _num(x: float) -> str:
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if not math.isfinite(x):
        return str(x)
    return f"{x:.4g}"


def section_markdown(claim: Claim, result: dict[str, Any]) -> str:
    lines = [
        f"## {claim.title}",
        "",
        f"> {claim.quote}",
        "",
        f"**Experiment.** {claim.experiment}",
        "",
        "**Criteria (fixed before the run):**",
        "",
    ]
    for c, ok in zip(claim.criteria, result["met"], strict=True):
        lines.append(f"- [{'x' if ok else ' '}] {c.text}")
    lines += ["", "**Measured:**", "", "| figure | value |", "|---|---|"]
    lines += [f"| {k} | {_num(v)} |" for k, v in result["figures"].items()]
    if result.get("table"):
        header, rows = result["table"]
        lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    for remark in result.get("remarks", []):
        lines += ["", remark]
    for caption, path in result["plots"]:
        lines += ["", f"![{caption}]({path})", f"*{caption}*"]  # relative to the report
    lines += ["", f"**Verdict: {result['verdict']}.**", ""]
    return "\n".join(lines)


def section_html(claim: Claim, result: dict[str, Any], folder: Path) -> str:
    e = html.escape
    crit = "".join(
        f"<li>{'&#9745;' if ok else '&#9744;'} {e(c.text)}</li>"
        for c, ok in zip(claim.criteria, result["met"], strict=True)
    )
    figs = "".join(
        f"<tr><td>{e(k)}</td><td>{e(_num(v))}</td></tr>" for k, v in result["figures"].items()
    )
    table = ""
    if result.get("table"):
        header, rows = result["table"]
        table = (
            "<table><tr>"
            + "".join(f"<th>{e(h)}</th>" for h in header)
            + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
            + "</table>"
        )
    remarks = "".join(f"<p>{e(r)}</p>" for r in result.get("remarks", []))
    imgs = "".join(
        f'<figure><img src="data:image/png;base64,'
        f'{base64.b64encode((folder / p).read_bytes()).decode()}" alt="{e(cap)}">'
        f"<figcaption>{e(cap)}</figcaption></figure>"
        for cap, p in result["plots"]
    )
    cls = {HOLDS: "holds", FAILS: "fails", PARTLY: "partly"}[result["verdict"]]
    return (
        f'<section id="{e(claim.key)}"><h2>{e(claim.title)}</h2>'
        f"<blockquote>{e(claim.quote)}</blockquote><p><b>Experiment.</b> "
        f"{e(claim.experiment)}</p><p><b>Criteria (fixed before the run):</b></p><ul>{crit}"
        f"</ul><table><tr><th>figure</th><th>value</th></tr>{figs}</table>{table}{remarks}"
        f'{imgs}<p class="verdict {cls}">Verdict: {e(result["verdict"])}</p></section>'
    )


STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}"
    "blockquote{border-left:4px solid #bbb;margin:0;padding:0 1em;color:#444}"
    "table{border-collapse:collapse;font-size:13px;margin:.6em 0}td,th{border:1px solid #ccc;"
    "padding:3px 8px}th{background:#f3f3f3}img{max-width:100%}figcaption{color:#555;"
    "font-size:13px}.verdict{font-weight:700;font-size:1.1em}.holds{color:#1a7f37}"
    ".fails{color:#cf222e}.partly{color:#9a6700}section{border-top:1px solid #ddd;"
    "margin-top:2em}"
)


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    tmp.replace(path)
