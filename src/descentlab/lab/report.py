"""Metrics over seeds, and the report folder: Markdown, self-contained HTML, PNG plots."""

from __future__ import annotations

import base64
import html
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .workloads import Workload

Row = dict[str, Any]


def _finite(xs: Iterable[float]) -> list[float]:
    return [x for x in xs if x is not None and math.isfinite(x)]


def _mean_std(xs: list[float]) -> tuple[float, float]:
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), statistics.pstdev(xs) if len(xs) > 1 else 0.0


def _to_target(row: Row, target: float | None) -> tuple[int | None, float | None]:
    """First evaluated step (and training seconds) with train loss <= target."""
    if target is None:
        return None, None
    for e in row["evals"]:
        if math.isfinite(e["train_loss"]) and e["train_loss"] <= target:
            step = int(e["step"])
            return step, (row["time"][step - 1] if step > 0 else 0.0)
    return None, None


def summarize(rows: list[Row], targets: dict[str, float | None]) -> list[Row]:
    """One line per (workload, optimizer, regime, lr): mean +- std over seeds."""
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for r in rows:
        s = r["spec"]
        groups[(s["workload"], s["optimizer"], s["regime"], s["lr"])].append(r)
    out = []
    for (workload, optimizer, regime, lr), runs in groups.items():
        ok = [r for r in runs if not r["diverged"]]
        final = _finite(r["evals"][-1]["train_loss"] for r in ok)
        best = _finite(
            min(_finite(e["train_loss"] for e in r["evals"]), default=math.nan) for r in ok
        )
        line: Row = {
            "workload": workload,
            "optimizer": optimizer,
            "regime": regime,
            "lr": lr,
            "seeds": len(runs),
            "diverged": len(runs) - len(ok),
            "final_loss": _mean_std(final),
            "best_loss": _mean_std(best),
            "steps": runs[0]["spec"]["steps"],
        }
        accs = [_finite(e.get("test_acc") for e in r["evals"]) for r in ok]
        if any(accs):
            line["final_acc"] = _mean_std([a[-1] for a in accs if a])
            line["best_acc"] = _mean_std([max(a) for a in accs if a])
        target = targets.get(workload)
        if target is not None:
            hits = [_to_target(r, target) for r in ok]
            steps = [h[0] for h in hits if h[0] is not None]
            seconds = [h[1] for h in hits if h[1] is not None]
            line["target"] = target
            line["reached"] = len(steps)
            line["steps_to_target"] = statistics.median(steps) if steps else None
            line["seconds_to_target"] = statistics.median(seconds) if seconds else None
        out.append(line)
    out.sort(key=lambda x: (x["workload"], x["regime"], x["optimizer"], x["lr"]))
    return out


def best_lrs(summary: list[Row]) -> dict[tuple[str, str, str], float]:
    """Per (workload, optimizer, regime): the lr with the lowest mean final loss."""
    best: dict[tuple[str, str, str], Row] = {}
    for line in summary:
        key = (line["workload"], line["optimizer"], line["regime"])
        score = line["final_loss"][0]
        if line["diverged"] == line["seeds"] or not math.isfinite(score):
            continue
        if key not in best or score < best[key]["final_loss"][0]:
            best[key] = line
    return {k: v["lr"] for k, v in best.items()}


def grid_edge_notes(summary: list[Row]) -> list[str]:
    """Warn where the best lr sits at the end of the grid: the optimum may lie beyond it."""
    notes = []
    for (workload, optimizer, regime), lr in sorted(best_lrs(summary).items()):
        grid = sorted(
            s["lr"]
            for s in summary
            if (s["workload"], s["optimizer"], s["regime"]) == (workload, optimizer, regime)
        )
        if len(grid) >= 3 and lr in (grid[0], grid[-1]):
            side = "smallest" if lr == grid[0] else "largest"
            notes.append(
                f"{workload} [{regime}] {optimizer}: the best lr {lr:g} is the {side} "
                "tried; a wider grid may do better."
            )
    return notes


def _fmt(ms: tuple[float, float], digits: int = 4) -> str:
    mean, std = ms
    if not math.isfinite(mean):
        return "-"
    return f"{mean:.{digits}g} ± {std:.2g}"


def table_rows(summary: list[Row], only_best: bool) -> tuple[list[str], list[list[str]]]:
    """Header and cells shared by the Markdown and HTML tables (all lrs) and the terminal
    (``only_best``: one compact row per optimizer at its best lr)."""
    chosen = best_lrs(summary)
    with_acc = any("final_acc" in s for s in summary)
    with_target = any("target" in s for s in summary)
    header = ["workload", "regime", "optimizer", "lr", "final loss"]
    header += [] if only_best else ["best loss"]
    if with_acc:
        header += ["test acc"] if only_best else ["final test acc", "best test acc"]
    if with_target:
        header += ["steps to target", "s to target"]
    header += ["diverged"]
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
                if st
                else "not reached"
            )
            row.append(f"{s['seconds_to_target']:.3f}" if st else "-")
        row.append(f"{s['diverged']}/{s['seeds']}")
        cells.append(row)
    return header, cells


# ---------------------------------------------------------------- plots


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Any, path: Path) -> Path:
    """Lay out (unless the figure has its own layout engine), save as PNG, close."""
    if figure.get_layout_engine() is None:
        figure.tight_layout()
    figure.savefig(path, dpi=90)
    pyplot().close(figure)
    return path


def _curves(rows: list[Row], key: str, x: str) -> tuple[np.ndarray, np.ndarray]:
    """Eval curves of several seeds on a common grid: (x values, values[seed, point])."""
    length = min(len(r["evals"]) for r in rows)
    if x == "step":
        xs = np.array([e["step"] for e in rows[0]["evals"][:length]], dtype=float)
    else:  # mean training seconds at each evaluated step
        xs = np.array(
            [
                statistics.fmean(
                    (r["time"][e["step"] - 1] if e["step"] > 0 else 0.0)
                    for r in rows
                    for e in [r["evals"][i]]
                )
                for i in range(length)
            ]
        )
    ys = np.array([[e.get(key, np.nan) for e in r["evals"][:length]] for r in rows], dtype=float)
    return xs, ys


def plot_workload(
    workload: str,
    rows: list[Row],
    summary: list[Row],
    info: Workload | None,
    folder: Path,
) -> list[tuple[str, Path]]:
    """Every plot for one workload; returns (caption, path) pairs."""
    plt = pyplot()
    chosen = best_lrs(summary)
    mine = [r for r in rows if r["spec"]["workload"] == workload]
    regimes = sorted({r["spec"]["regime"] for r in mine})
    optimizers = list(dict.fromkeys(r["spec"]["optimizer"] for r in mine))
    colors = {o: plt.get_cmap("tab10")(i % 10) for i, o in enumerate(optimizers)}
    figures: list[tuple[str, Path]] = []

    def best_runs(opt: str, regime: str) -> list[Row]:
        lr = chosen.get((workload, opt, regime))
        return [
            r
            for r in mine
            if r["spec"]["optimizer"] == opt
            and r["spec"]["regime"] == regime
            and r["spec"]["lr"] == lr
            and not r["diverged"]
        ]

    positive = all(
        e["train_loss"] > 0 for r in mine for e in r["evals"] if math.isfinite(e["train_loss"])
    )
    has_acc = any("test_acc" in e for r in mine for e in r["evals"])
    panels = [
        ("train_loss", "step", "training loss vs step"),
        ("train_loss", "time", "training loss vs wall time (s)"),
    ]
    if has_acc:
        panels.append(("test_acc", "step", "held-out accuracy vs step"))
    fig, axes = plt.subplots(
        len(regimes), len(panels), squeeze=False, figsize=(5.2 * len(panels), 3.8 * len(regimes))
    )
    for i, regime in enumerate(regimes):
        for j, (key, x, title) in enumerate(panels):
            ax = axes[i][j]
            for opt in optimizers:
                runs = best_runs(opt, regime)
                if not runs:
                    continue
                xs, ys = _curves(runs, key, x)
                mean = np.nanmean(ys, axis=0)
                ax.plot(
                    xs,
                    mean,
                    color=colors[opt],
                    label=f"{opt} (lr {chosen[(workload, opt, regime)]:g})",
                )
                if len(runs) > 1:
                    ax.fill_between(
                        xs,
                        np.nanmin(ys, axis=0),
                        np.nanmax(ys, axis=0),
                        color=colors[opt],
                        alpha=0.2,
                        linewidth=0,
                    )
            if key == "train_loss" and positive:
                ax.set_yscale("log")
            ax.set_title(f"{workload} [{regime}]: {title}", fontsize=9)
            ax.set_xlabel("seconds" if x == "time" else "step")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    path = save_figure(fig, folder / f"{workload}-curves.png")
    figures.append(
        ("Loss (and accuracy) at each optimizer's best lr; band: min-max over seeds", path)
    )

    # lr sensitivity: final loss vs lr, one line per optimizer (x marks a diverged lr)
    fig, axes = plt.subplots(1, len(regimes), squeeze=False, figsize=(5.5 * len(regimes), 3.8))
    for i, regime in enumerate(regimes):
        ax = axes[0][i]
        for opt in optimizers:
            lines = sorted(
                (
                    s
                    for s in summary
                    if s["workload"] == workload and s["optimizer"] == opt and s["regime"] == regime
                ),
                key=lambda s: s["lr"],
            )
            ok = [s for s in lines if s["diverged"] < s["seeds"]]
            if ok:
                ax.plot(
                    [s["lr"] for s in ok],
                    [s["final_loss"][0] for s in ok],
                    "o-",
                    color=colors[opt],
                    label=opt,
                )
            bad = [s["lr"] for s in lines if s["diverged"] == s["seeds"]]
            if bad:
                top = max((s["final_loss"][0] for s in ok), default=1.0)
                ax.plot(bad, [top] * len(bad), "x", color=colors[opt], markersize=9)
        ax.set_xscale("log")
        if positive:
            ax.set_yscale("log")
        ax.set_title(f"{workload} [{regime}]: final loss vs lr (x = diverged)", fontsize=9)
        ax.set_xlabel("learning rate")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    path = save_figure(fig, folder / f"{workload}-lr-sensitivity.png")
    figures.append(("Sensitivity to the learning rate: mean final training loss per lr", path))

    if info is not None and info.landscape is not None and info.bounds is not None:
        x0, x1, y0, y1 = info.bounds
        gx, gy = np.meshgrid(np.linspace(x0, x1, 300), np.linspace(y0, y1, 300))
        z = info.landscape(gx, gy)
        fig, ax = plt.subplots(figsize=(6.5, 5))
        shifted = z - z.min() + 1e-3
        ax.contour(
            gx,
            gy,
            shifted,
            levels=np.geomspace(shifted.min(), shifted.max(), 30),
            cmap="Greys",
            linewidths=0.6,
        )
        regime = regimes[0]
        for opt in optimizers:
            runs = best_runs(opt, regime)
            if runs and runs[0]["points"]:
                pts = np.array(runs[0]["points"])
                ax.plot(
                    pts[:, 0],
                    pts[:, 1],
                    "-",
                    color=colors[opt],
                    linewidth=1.2,
                    label=f"{opt} (lr {chosen[(workload, opt, regime)]:g})",
                )
                ax.plot(pts[0, 0], pts[0, 1], "o", color="black", markersize=4)
        if info.optimum is not None:
            ax.plot(*info.optimum, "*", color="gold", markersize=14, markeredgecolor="black")
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_title(f"{workload}: trajectories at each optimizer's best lr (seed 0)", fontsize=9)
        ax.legend(fontsize=7, loc="upper right")
        path = save_figure(fig, folder / f"{workload}-trajectories.png")
        figures.append(("Optimizer trajectories over the landscape's contours", path))
    return figures


# ---------------------------------------------------------------- documents


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def markdown(
    title: str, notes: list[str], summary: list[Row], figures: list[tuple[str, Path]], folder: Path
) -> str:
    header, cells = table_rows(summary, only_best=False)
    lines = [
        f"# {title}",
        "",
        *notes,
        "",
        "`*` marks each optimizer's best learning rate (lowest mean final training loss).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    lines.append("")
    for caption, path in figures:
        lines += [f"![{caption}]({path.relative_to(folder).as_posix()})", f"*{caption}*", ""]
    return "\n".join(lines)


def html_page(
    title: str, notes: list[str], summary: list[Row], figures: list[tuple[str, Path]]
) -> str:
    """One self-contained page: tables inline, plots embedded as base64 PNG."""
    header, cells = table_rows(summary, only_best=False)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr"
        + (' class="best"' if "*" in c[3] else "")
        + ">"
        + "".join(f"<td>{html.escape(x)}</td>" for x in c)
        + "</tr>"
        for c in cells
    )
    imgs = "".join(
        f'<figure><img src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}"'
        f' alt="{html.escape(cap)}"><figcaption>{html.escape(cap)}</figcaption></figure>'
        for cap, p in figures
    )
    notes_html = "".join(f"<p>{html.escape(n)}</p>" for n in notes)
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
        "padding:3px 8px;text-align:right}th{background:#f3f3f3}tr.best{background:#eef7ee;"
        "font-weight:600}figure{margin:1.5em 0}img{max-width:100%}"
        "figcaption{color:#555;font-size:13px}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
        f"{notes_html}<p>Highlighted rows: each optimizer's best learning rate.</p>"
        f"<table><tr>{head}</tr>{body}</table>{imgs}</body></html>"
    )


def write_report(
    folder: Path,
    title: str,
    notes: list[str],
    rows: list[Row],
    workloads: dict[str, Workload | None],
) -> dict[str, Path]:
    """Summary, plots, summary.md and index.html in ``folder``; returns their paths."""
    import json

    targets = {name: (w.target if w is not None else None) for name, w in workloads.items()}
    summary = summarize(rows, targets)
    notes = notes + grid_edge_notes(summary)
    plots = folder / "plots"
    plots.mkdir(exist_ok=True)
    figures: list[tuple[str, Path]] = []
    for name, info in workloads.items():
        figures += plot_workload(name, rows, summary, info, plots)
    paths = {
        "summary_json": folder / "summary.json",
        "markdown": folder / "summary.md",
        "html": folder / "index.html",
    }
    _atomic_write(paths["summary_json"], json.dumps(summary, indent=1, allow_nan=True))
    _atomic_write(paths["markdown"], markdown(title, notes, summary, figures, folder))
    _atomic_write(paths["html"], html_page(title, notes, summary, figures))
    return paths
