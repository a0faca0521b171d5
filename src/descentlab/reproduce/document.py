"""The documents of ``descentlab reproduce``: ``report.md``, ``index.html`` and
``config.json``, written from the saved results of the claims.

Only presentation lives here: every verdict, label and figure shown comes from the saved
result (itself judged by :mod:`descentlab.reproduce.base`), so a document never decides
anything. The Markdown is built line by line; the HTML page is rendered from the
autoescaping Jinja2 template ``templates/report.html``, as the lab's report is, so that
every text the claims carry is escaped in one place.
"""

from __future__ import annotations

import base64
import math
import platform
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..lab.files import write_atomic, write_json
from .base import (
    EXACT,
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    NOT_RESOLVED,
    NOT_TESTED,
    PARTLY,
    Claim,
    Criterion,
)

TITLE = "The seed's claims, measured"

HOW_TO_READ = (
    "Each claim is split into the statements it makes. A statement that claims an effect "
    "states which arms it compares, what quantity, and the smallest effect that counts "
    "(signed so that a positive value favours the claim); the experiment measures the "
    "effect once per seed, and the verdict reads its mean with a 95% t-interval over the "
    "seeds, in one of four outcomes:",
    "**holds**: the whole interval lies at or above the smallest effect that counts.",
    "**does not hold**: the whole interval lies below it: no effect, or the reverse, was measured.",
    "**not resolved at this budget**: the interval straddles it; the full run adds seeds "
    "(up to a cap per claim) before saying so, and the report gives the number of seeds "
    "that would likely resolve it.",
    "**holds only <condition>**: the effect is not there in general, but a measured "
    "boundary (a test that holds on one side and fails on the other) says where it is.",
    "A statement whose setting the workload does not provide is **not tested** (with the "
    'reason), never "does not hold"; algebra checked to round-off is **exact, by '
    "construction**; a statement that reads a figure flagged by its experiment (a best value "
    "at the edge of its grid) is **inconclusive**. Where nothing is random (exact "
    "gradients, a fixed start, the seed's own code) one run measures the effect exactly: its "
    "interval is the point (deterministic). What the seed's PyTorch example prints is "
    "checked by criteria fixed before the run. Timing figures are CPU time, which machine "
    "load does not invert.",
)

# The page's colour for each verdict (the undecided ones are shown as partial).
CSS_CLASS = {
    HOLDS: "holds",
    EXACT: "holds",
    FAILS: "fails",
    PARTLY: "partly",
    INCONCLUSIVE: "partly",
    NOT_RESOLVED: "partly",
    NOT_TESTED: "partly",
}


def effect_text(statement: dict[str, Any]) -> str:
    """A saved statement's effect as printed beside its verdict: the estimate, its interval
    and the smallest effect that counts (empty for a statement without one).

    >>> effect_text({"effect": {"estimate": 0.0226, "low": 0.004, "high": 0.041,
    ...   "level": 0.95, "smallest": 0.02, "seeds": 10, "unit": ""}})
    '+0.0226 [+0.004, +0.041] (95%, 10 seeds; counts from +0.02)'
    """
    e = statement.get("effect")
    if not e:
        return ""

    def f(text: float | str) -> str:
        x = float(text)  # infinities and nan are saved as text
        return str(x) if not math.isfinite(x) else f"{x:+.3g}{e.get('unit', '')}"

    if str(e.get("method", "")).startswith("deterministic"):
        return f"{f(e['estimate'])} (deterministic, exact; counts from {f(e['smallest'])})"
    return (
        f"{f(e['estimate'])} [{f(e['low'])}, {f(e['high'])}] "
        f"({e['level']:.0%}, {e['seeds']} seeds; counts from {f(e['smallest'])})"
    )


def number(x: float | None) -> str:
    """A figure as printed: four significant digits, integers, booleans and inf as they are.

    >>> number(0.123456), number(3), number(float("inf")), number(True)
    ('0.1235', '3', 'inf', 'True')
    """
    if x is None:
        return "not finite"  # saved JSON keeps no infinity: a diverged run's figure
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if not math.isfinite(x):
        return str(x)
    return f"{x:.4g}"


def _criterion_line(c: Criterion, ok: bool) -> str:
    tag = "" if c.required else " *(supporting)*"
    return f"[{'x' if ok else ' '}] {c.text}{tag}"


def section_markdown(claim: Claim, result: dict[str, Any]) -> str:
    """A claim's section of ``report.md``: its statements with their criteria ticked, the
    measured figures (which a reader can re-judge), table, remarks, plots and verdict."""
    lines = [
        f"## {claim.title}",
        "",
        f"> {claim.quote}",
        "",
        f"**Experiment.** {claim.experiment}",
        "",
        "**Statements** (criteria fixed before the run):",
        "",
    ]
    for st, j in zip(claim.statements, result["statements"], strict=True):
        lines.append(f"{st.text} — **{j['label']}**")
        if st.effect is not None and j.get("effect"):
            lines.append(f"- effect: {st.effect.text}: {effect_text(j)}")
        if j["verdict"] in (INCONCLUSIVE, NOT_RESOLVED):
            lines.append(f"  ({j['verdict']}: {j['detail']})")
        for c, ok in zip(st.criteria, j["met"], strict=True):
            lines.append(f"- {_criterion_line(c, ok)}")
        if st.condition:
            inside = "yes" if all(j.get("inside", [])) else "no"
            outside = "yes" if not all(j.get("outside", [])) else "no"
            lines.append(
                f"- condition *{st.condition.text}*: the test holds inside the boundary "
                f"({inside}) and fails past it ({outside})"
            )
        lines.append("")
    lines += ["**Measured:**", "", "| figure | value |", "|---|---|"]
    lines += [f"| {k} | {number(v)} |" for k, v in result["figures"].items()]
    if result.get("samples"):
        lines += ["", "**Per-seed effects** (seed 0 first):", "", "| effect | per seed |"]
        lines += ["|---|---|"]
        lines += [
            f"| {k} | {', '.join(number(float(v)) for v in vs)} |"
            for k, vs in result["samples"].items()
        ]
    if result.get("table"):
        header, rows = result["table"]
        lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    for name, why in result.get("flags", {}).items():
        lines += ["", f"*{name}* cannot carry a verdict: {why}."]
    for remark in (*result.get("remarks", []), cost_text(claim, result)):
        lines += ["", remark]
    for caption, path in result["plots"]:
        lines += ["", f"![{caption}]({path})", f"*{caption}*"]  # relative to the report
    lines += ["", f"**Verdict: {result['verdict']}.**", ""]
    return "\n".join(lines)


def cost_text(claim: Claim, result: dict[str, Any]) -> str:
    """What measuring the claim cost, and what the seeds added while a statement was not
    resolved cost of it (full runs add them up to the claim's cap)."""
    seeds, first = int(result.get("seeds", 0)), int(result.get("config", {}).get("seeds", 0))
    seconds = float(result.get("seconds", 0.0))
    if seeds > first:
        extra = seconds - float(result.get("seconds with the first seeds", seconds))
        return (
            f"Cost: {seeds} seeds ({seeds - first} added while a statement was not resolved; "
            f"cap {max(first, claim.max_seeds)}), {seconds:.1f} s, {extra:.1f} s of it for the "
            "added seeds."
        )
    return f"Cost: {seeds} seed{'s' * (seeds != 1)}, {seconds:.1f} s."


def section_view(claim: Claim, result: dict[str, Any], folder: Path) -> dict[str, Any]:
    """What the page's template shows of one claim: plain values, escaped by the template.
    Plots are embedded (base64 PNG) so that the page stands alone."""
    statements = [
        {
            "text": st.text,
            "css": CSS_CLASS[j["verdict"]],
            "label": j["label"],
            "why": j["detail"] if j["verdict"] in (INCONCLUSIVE, NOT_RESOLVED) else "",
            "effect": (
                f"{st.effect.text}: {effect_text(j)}" if st.effect and j.get("effect") else ""
            ),
            "criteria": [
                {"ok": ok, "text": c.text, "required": c.required}
                for c, ok in zip(st.criteria, j["met"], strict=True)
            ],
        }
        for st, j in zip(claim.statements, result["statements"], strict=True)
    ]
    table = None
    if result.get("table"):
        header, rows = result["table"]
        table = {"header": header, "rows": rows}
    return {
        "key": claim.key,
        "title": claim.title,
        "quote": claim.quote,
        "experiment": claim.experiment,
        "statements": statements,
        "figures": [(k, number(v)) for k, v in result["figures"].items()]
        + [
            (f"{k} (per seed)", ", ".join(number(float(v)) for v in vs))
            for k, vs in result.get("samples", {}).items()
        ],
        "table": table,
        "remarks": [*result.get("remarks", []), cost_text(claim, result)],
        "flags": list(result.get("flags", {}).items()),
        "images": [
            (caption, base64.b64encode((folder / path).read_bytes()).decode())
            for caption, path in result["plots"]
        ],
        "verdict": result["verdict"],
    }


def _template() -> Any:
    import jinja2

    text = (resources.files("descentlab.reproduce") / "templates" / "report.html").read_text(
        "utf-8"
    )
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(text)


def html_page(
    claims: list[Claim], results: dict[str, dict[str, Any]], head: str, folder: Path
) -> str:
    """``index.html``: the overview table of every statement's verdict, then one section per
    claim, from the autoescaping template."""
    overview = [
        {
            "key": c.key,
            "title": c.title,
            "statement": st.text,
            "label": j["label"],
            "effect": effect_text(j),
        }
        for c in claims
        for st, j in zip(c.statements, results[c.key]["statements"], strict=True)
    ]
    sections = [section_view(c, results[c.key], folder) for c in claims]
    return str(
        _template().render(
            title=TITLE,
            head=head,
            how_to_read=HOW_TO_READ,
            overview=overview,
            sections=sections,
        )
    )


def with_evidence(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
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


def write_report(
    folder: Path, claims: list[Claim], results: dict[str, dict[str, Any]], config: dict[str, Any]
) -> None:
    """``report.md``, ``index.html`` and ``config.json`` (the run's settings, versions and
    load) in ``folder``, for ``claims`` in their order."""
    results = with_evidence(results)
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
    loads = [x for c in claims for x in results[c.key].get("load average", [])]
    if loads:
        head += f"; load average while measuring {min(loads):.1f} to {max(loads):.1f}"
    table = [
        "| claim | statement | verdict | effect [95% interval] |",
        "|---|---|---|---|",
    ]
    for c in claims:
        for st, j in zip(c.statements, results[c.key]["statements"], strict=True):
            table.append(f"| [{c.title}](#{c.key}) | {st.text} | {j['label']} | {effect_text(j)} |")
    md = [f"# {TITLE}", "", head, ""]
    for paragraph in HOW_TO_READ:
        md += [paragraph, ""]
    md += [*table, ""]
    md += [section_markdown(c, results[c.key]) for c in claims]
    write_atomic(folder / "report.md", "\n".join(md))
    write_atomic(folder / "index.html", html_page(claims, results, head, folder))
    write_json(
        folder / "config.json",
        {**config, "versions": versions, "claims": [c.key for c in claims], "load average": loads},
    )
