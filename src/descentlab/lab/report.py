"""The report folder of a sweep: Markdown, self-contained HTML, the summary and its plots.

:func:`write_report` summarizes the runs (:mod:`descentlab.lab.summary`), takes the decisions
(:mod:`descentlab.lab.decide`), draws the figures (:mod:`descentlab.lab.plots`) and writes
``summary.json``, ``report.md`` (also as ``summary.md``) and ``index.html``; the rules of the
decisions are printed at the top of every report (:data:`RULES`). :func:`table_rows` lays
out the tables of the documents and of the terminal.

The names this module held before the decisions, the summary and the plots had their own
modules (``summarize``, ``choices``, ``headline``, ``pyplot``...) are still importable from
here.
"""

from __future__ import annotations

import base64
import math
import statistics
from collections import defaultdict
from importlib import resources
from pathlib import Path
from typing import Any

from .decide import REL_FLOOR, best_lrs, headline, loss_floor, row_notes
from .files import write_atomic, write_json
from .plots import plot_workload
from .summary import TIMING, Row, finite, summarize
from .workloads import Workload

__all__ = ["RULES", "html_page", "markdown", "sections", "table_rows", "write_report"]


# ---------------------------------------------------------------- tables


def _fmt(ms: tuple[float, float] | list[float], digits: int = 4) -> str:
    mean, std = ms
    if not math.isfinite(mean):
        return "-"
    return f"{mean:.{digits}g} ± {std:.2g}"


def table_rows(
    summary: list[Row], only_best: bool, with_notes: bool = False
) -> tuple[list[str], list[list[str]]]:
    """Header and cells shared by the Markdown and HTML tables (all lrs) and the terminal
    (``only_best``: one compact row per optimizer at its best lr). ``with_notes`` adds a
    column with the notes that concern each row (grid edge, ties, divergence)."""
    chosen = best_lrs(summary)
    notes = row_notes(summary) if with_notes else {}
    with_acc = any("final_acc" in s for s in summary)
    with_target = any("target" in s for s in summary)
    header = ["workload", "regime", "optimizer", "lr", "final loss"]
    header += [] if only_best else ["best loss"]
    if with_acc:
        header += ["test acc"] if only_best else ["final test acc", "best test acc"]
    if with_target:
        header += ["steps to target", "CPU s to target"]
    header += ["diverged"]
    header += ["notes"] if with_notes else []
    cells = []
    for s in summary:
        is_best = chosen.get((s["workload"], s["optimizer"], s["regime"])) == s["lr"]
        if only_best and not is_best:
            continue
        digits = 3 if only_best else 4
        lr = f"{s['lr']:g}" + (" *" if is_best and not only_best else "")
        row = [s["workload"], s["regime"], s["optimizer"], lr, _fmt(s["final_loss"], digits)]
        row += [] if only_best else [_fmt(s["best_loss"])]
        if with_acc:
            row.append(_fmt(s.get("final_acc", (math.nan, 0)), 3))
            row += [] if only_best else [_fmt(s.get("best_acc", (math.nan, 0)), 3)]
        if with_target:
            st = s.get("steps_to_target")
            ran = s["seeds"] - s["diverged"]
            row.append(
                "-"
                if "target" not in s
                else f"{st:g} ({s['reached']}/{ran})"
                if st is not None
                else f"not reached (0/{ran})"
                if ran
                else "-"
            )
            row.append(f"{s['seconds_to_target']:.3f}" if st is not None else "-")
        row.append(f"{s['diverged']}/{s['seeds']}")
        if with_notes:
            row.append(
                "; ".join(notes.get((s["workload"], s["optimizer"], s["regime"], s["lr"]), []))
            )
        cells.append(row)
    return header, cells


# ---------------------------------------------------------------- documents


RULES = (
    "Each optimizer is shown at its best learning rate: the lowest mean final training loss "
    "over seeds. Losses closer than the workload's round-off floor "
    f"({REL_FLOOR:g} × max(start loss, 1)) count as equal, both for that choice (ties go to "
    "the lr reaching the target on more seeds, then in fewer steps) and for the verdicts. "
    "A verdict names a winner only when, against every other optimizer, the per-seed "
    "difference (a seed fixes the initial weights and the data order for every optimizer) "
    "has a 95% t-interval over seeds wholly beyond the floor (losses), one evaluation "
    "interval (steps to target) or zero (accuracy): the rule `descentlab reproduce` reads "
    "its effects with (descentlab.evidence). Otherwise the comparison is not resolved, and "
    "the verdict says no clear winner and gives the intervals. "
    "A winner must beat tuned rivals: when a rival's best lr is the smallest or largest of "
    "its grid, or it tried a single lr, the verdict is not resolved, and the notes say which "
    "lrs to add. " + TIMING
)


def _split_notes(notes: list[str], names: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Notes that start with ``"<workload>:"`` go to that workload's section."""
    general: list[str] = []
    per: dict[str, list[str]] = defaultdict(list)
    for note in notes:
        owner = next((n for n in names if note.startswith(f"{n}:")), None)
        if owner is None:
            general.append(note)
        else:
            per[owner].append(note[len(owner) + 1 :].strip())
    return general, dict(per)


def sections(
    summary: list[Row],
    notes: list[str],
    workloads: dict[str, Workload | None],
    figures: dict[str, list[tuple[str, Path]]],
) -> tuple[list[str], list[dict[str, Any]]]:
    """General notes, and per workload: heading, definitions, verdicts, tables, plots."""
    names = list(dict.fromkeys([*workloads, *(s["workload"] for s in summary)]))
    general, per = _split_notes(notes, names)
    out = []
    for name in names:
        mine = [s for s in summary if s["workload"] == name]
        if not mine:
            continue
        info = workloads.get(name)
        floor = loss_floor(summary, name)
        starts = finite(s.get("start_loss") for s in mine)
        seeds = max(s["seeds"] for s in mine)
        definitions = [
            f"Round-off floor: {floor:.2g} (start loss "
            f"{statistics.fmean(starts) if starts else math.nan:.4g}); final losses closer "
            "than this are ties."
        ]
        target = next((s["target"] for s in mine if s.get("target") is not None), None)
        if target is not None:
            definitions.append(
                f"Steps to target: the first evaluated step (evaluated every "
                f"{mine[0]['eval_every']} steps) at which the full training loss is ≤ "
                f"{target:g}; the table shows the median over seeds and (k/n): k of the n "
                "seeds that did not diverge reached it. 'CPU s to target' is the median "
                "CPU seconds of the process to that step."
            )
        if seeds == 1:
            definitions.append("One seed: no interval, so no verdict names a winner.")
        budgets = {
            f"{len({s['lr'] for s in mine if s['optimizer'] == o})} lrs × "
            f"{max(s['seeds'] for s in mine if s['optimizer'] == o)} seeds"
            for o in {s["optimizer"] for s in mine}
        }
        if len(budgets) == 1:
            definitions.append(f"Tuning budget: {budgets.pop()} for every optimizer.")
        regimes = []
        for regime in sorted({s["regime"] for s in mine}):
            part = [s for s in mine if s["regime"] == regime]
            bh, bc = table_rows(part, only_best=True, with_notes=True)
            ah, ac = table_rows(part, only_best=False, with_notes=True)
            regimes.append(
                {
                    "label": regime,
                    "steps": part[0]["steps"],
                    "verdicts": headline(summary, name, regime),
                    "best_header": bh[2:],
                    "best_rows": [c[2:] for c in bc],
                    "all_header": ah,
                    "all_rows": ac,
                }
            )
        out.append(
            {
                "name": name,
                "about": info.summary if info is not None else "your model",
                "seeds": seeds,
                "definitions": definitions,
                "notes": per.get(name, []),
                "regimes": regimes,
                "figures": figures.get(name, []),
            }
        )
    return general, out


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(_cell(h) for h in header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows),
    ]


def markdown(title: str, general: list[str], parts: list[dict[str, Any]], folder: Path) -> str:
    lines = [f"# {title}", "", "## Conclusions", ""]
    for part in parts:
        for regime in part["regimes"]:
            lines.append(f"**{part['name']}** [{regime['label']}], {part['about']}:")
            lines.append("")
            lines += [f"- {v.metric}: {v.text}" for v in regime["verdicts"]]
            lines.append("")
    lines += [f"*How to read this: {RULES}*", ""]
    if general:
        lines += ["Notes:", "", *(f"- {n}" for n in general), ""]
    for part in parts:
        lines += [
            f"## {part['name']}: {part['about']}",
            "",
            *(f"- {d}" for d in part["definitions"]),
            *(f"- {n}" for n in part["notes"]),
            "",
        ]
        for regime in part["regimes"]:
            lines += [
                f"### {part['name']} [{regime['label']}], {regime['steps']} steps, "
                f"{part['seeds']} seed(s)",
                "",
                "Each optimizer at its best learning rate (mean ± std over seeds):",
                "",
                *_md_table(regime["best_header"], regime["best_rows"]),
                "",
                "Every learning rate tried (`*` marks each optimizer's best):",
                "",
                *_md_table(regime["all_header"], regime["all_rows"]),
                "",
            ]
        for caption, path in part["figures"]:
            lines += [f"![{caption}]({path.relative_to(folder).as_posix()})", f"*{caption}*", ""]
    return "\n".join(lines)


def _template() -> Any:
    import jinja2

    text = (resources.files("descentlab.lab") / "templates" / "report.html").read_text("utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(text)


def html_page(title: str, general: list[str], parts: list[dict[str, Any]]) -> str:
    """One self-contained page from the autoescaping template; plots embedded as PNG."""
    images = {
        path: "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
        for part in parts
        for _, path in part["figures"]
    }
    return str(
        _template().render(title=title, rules=RULES, general=general, parts=parts, images=images)
    )


def write_report(
    folder: Path,
    title: str,
    notes: list[str],
    rows: list[Row],
    workloads: dict[str, Workload | None],
) -> dict[str, Path]:
    """Summary, plots, report.md (also as summary.md) and index.html in ``folder``."""

    targets = {name: (w.target if w is not None else None) for name, w in workloads.items()}
    summary = summarize(rows, targets)
    plots = folder / "plots"
    plots.mkdir(exist_ok=True)
    figures = {
        name: plot_workload(name, rows, summary, info, plots) for name, info in workloads.items()
    }
    drawn = {path.resolve() for pairs in figures.values() for _, path in pairs}
    for old in plots.glob("*.png"):  # plots of an earlier sweep in this folder: not ours
        if old.resolve() not in drawn:
            old.unlink()
    general, parts = sections(summary, notes, workloads, figures)
    paths = {
        "summary_json": folder / "summary.json",
        "markdown": folder / "report.md",
        "summary_markdown": folder / "summary.md",
        "html": folder / "index.html",
    }
    text = markdown(title, general, parts, folder)
    write_json(paths["summary_json"], summary)  # strict JSON: NaN and inf as null
    write_atomic(paths["markdown"], text)
    write_atomic(paths["summary_markdown"], text)
    write_atomic(paths["html"], html_page(title, general, parts))
    return paths
