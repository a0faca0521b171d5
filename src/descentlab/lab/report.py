"""Metrics over seeds, and the report folder: Markdown, self-contained HTML, PNG plots.

How the report decides (the rules are also printed at the top of every report):

* **Numerical floor.** Training losses that differ by no more than
  ``REL_FLOOR * max(|start loss|, 1)`` (the workload's mean loss at step 0) are equal:
  such differences are floating-point round-off. The floor applies when choosing each
  optimizer's best learning rate, when naming a winner, and as the lower limit of the
  loss axes (values below it are drawn at it).
* **Best learning rate.** Per (workload, optimizer, regime): the lr with the lowest mean
  final training loss among lrs where no seed diverged (any lr if every one had a
  diverging seed). Lrs within the floor of that minimum are tied; among them the one
  that reaches the target on the most seeds, then in the fewest steps, wins.
* **Winner.** Per metric, the optimizer with the best mean wins clearly only when its
  interval ``mean ± std`` over seeds, widened by the metric's resolution (the floor for
  losses, one evaluation interval for steps to target), overlaps no other optimizer's
  interval; otherwise there is "no clear winner" among those whose intervals overlap it.
"""

from __future__ import annotations

import base64
import math
import statistics
import zlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..files import write_atomic, write_json
from .workloads import Workload

Row = dict[str, Any]
Key = tuple[str, str, str]  # workload, optimizer, regime

REL_FLOOR = 1e-12
"""Loss differences below ``REL_FLOOR * max(|start loss|, 1)`` are round-off (ties)."""

# One colour per optimizer label, the same in every plot and every report: the default
# optimizers have fixed colours; other labels take the remaining ones by a hash of the label.
_PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#637939",
)
_FIXED_COLORS = {
    "sgd": 0,
    "sgd:momentum=0.9": 1,
    "rmsprop": 2,
    "adam": 3,
    "adamw": 4,
    "momentum": 5,
}


def optimizer_color(label: str) -> str:
    """The colour of an optimizer label in every plot (a fixed function of the label)."""
    if label in _FIXED_COLORS:
        return _PALETTE[_FIXED_COLORS[label]]
    free = _PALETTE[len(_FIXED_COLORS) :]
    return free[zlib.crc32(label.encode()) % len(free)]


def _finite(xs: Iterable[float | None]) -> list[float]:
    return [x for x in xs if x is not None and math.isfinite(x)]


def _mean_std(xs: list[float]) -> tuple[float, float]:
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), statistics.pstdev(xs) if len(xs) > 1 else 0.0


def _to_target(row: Row, target: float | None) -> tuple[int | None, float | None]:
    """First evaluated step (and training CPU seconds) with train loss <= target."""
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
            "start_loss": _mean_std(_finite(r["evals"][0]["train_loss"] for r in runs))[0],
            "steps": runs[0]["spec"]["steps"],
            "eval_every": runs[0]["spec"].get("eval_every", 1),
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
            line["steps_to_target_runs"] = steps
        out.append(line)
    out.sort(key=lambda x: (x["workload"], x["regime"], x["optimizer"], x["lr"]))
    return out


# ---------------------------------------------------------------- timing

TIMING = (
    "Timings are CPU seconds of the process (time.process_time, every thread torch uses), "
    "summed over the training steps: time spent waiting for a CPU on a busy machine does "
    "not count, unlike wall-clock time. Each run records the machine's load average at its "
    "start and end."
)

LOAD_HIGH = 1.0
"""A load average above this many times the CPU count makes timings suspect."""
LOAD_SPREAD = 0.5
"""Runs whose load averages per CPU differ by more than this were timed in unlike conditions."""


def _run_load(row: Row) -> float | None:
    """The highest 1-minute load average per CPU recorded for a run (None: not recorded)."""
    loads = [x[0] for x in (row.get("load"), row.get("load_end")) if x]
    cpus = row.get("cpus") or 0
    if not loads or cpus < 1:
        return None
    return max(loads) / cpus


def load_notes(rows: list[Row]) -> list[str]:
    """Warnings about timings: runs timed on a loaded machine, runs of one sweep timed at
    very different loads (a resumed sweep, say), runs timed in wall-clock seconds."""
    notes = []
    batched = [int(r["batch"]) for r in rows if r.get("batch", 1) > 1]  # absent: alone
    if batched:
        notes.append(
            f"{len(batched)} of {len(rows)} run(s) were trained in batches of up to "
            f"{max(batched)} runs at once (the lrs and seeds of one optimizer, as one "
            "vectorized problem): the time of such a run is its share of its batch's CPU "
            "seconds, not what it takes alone, and shrinks as the batch grows; compare "
            "times of runs trained alike."
        )
    wall = sum(1 for r in rows if r.get("clock") != "process_cpu")
    if wall:
        notes.append(
            f"Warning: {wall} of {len(rows)} run(s) were recorded by an earlier version that "
            "timed wall-clock seconds, not CPU seconds; their timings are not comparable with "
            "the others (train them again in a new folder to compare times)."
        )
    loads = {id(r): _run_load(r) for r in rows}
    known = [r for r in rows if loads[id(r)] is not None]
    if not known:
        return notes
    per_cpu = [loads[id(r)] or 0.0 for r in known]
    cpus = max(int(r["cpus"]) for r in known)
    high = [r for r in known if (loads[id(r)] or 0.0) > LOAD_HIGH]
    if high:
        top = max(max(x[0] for x in (r.get("load"), r.get("load_end")) if x) for r in high)
        notes.append(
            f"Warning: the machine was busy during {len(high)} of {len(known)} run(s) (load "
            f"average up to {top:.1f} on {cpus} CPUs). Timings are CPU seconds, which load "
            "distorts far less than wall time, but contention still slows each step: trust "
            "times only from a sweep on an idle machine."
        )
    if max(per_cpu) - min(per_cpu) > LOAD_SPREAD:
        notes.append(
            f"Warning: runs of this sweep were timed at very different machine loads (load "
            f"average per CPU from {min(per_cpu):.2f} to {max(per_cpu):.2f}, e.g. a sweep "
            "resumed on a machine whose load had changed); compare their times with care."
        )
    return notes


# ---------------------------------------------------------------- choosing


def loss_floor(summary: list[Row], workload: str) -> float:
    """The workload's round-off floor: REL_FLOOR * max(|mean start loss|, 1)."""
    starts = _finite(s.get("start_loss") for s in summary if s["workload"] == workload)
    scale = max(abs(statistics.fmean(starts)), 1.0) if starts else 1.0
    return REL_FLOOR * scale


@dataclass
class Choice:
    """An optimizer's best lr in one (workload, regime), and the lrs tied with it."""

    line: Row
    tied: list[float]
    grid: list[float]


def choices(summary: list[Row]) -> dict[Key, Choice]:
    """Per (workload, optimizer, regime): the best lr under the floor rule (module doc)."""
    groups: dict[Key, list[Row]] = defaultdict(list)
    for line in summary:
        groups[(line["workload"], line["optimizer"], line["regime"])].append(line)
    floors = {w: loss_floor(summary, w) for w in {s["workload"] for s in summary}}
    out: dict[Key, Choice] = {}
    for key, lines in groups.items():
        ran = [s for s in lines if s["diverged"] < s["seeds"] and math.isfinite(s["final_loss"][0])]
        clean = [s for s in ran if s["diverged"] == 0] or ran
        if not clean:
            continue
        low = min(s["final_loss"][0] for s in clean)
        tied = [s for s in clean if s["final_loss"][0] <= low + floors[key[0]]]

        def rank(s: Row) -> tuple[float, float, float]:
            steps = s.get("steps_to_target")
            return (
                -s.get("reached", 0),
                steps if steps is not None else math.inf,
                s["final_loss"][0],
            )

        out[key] = Choice(
            min(tied, key=rank), sorted(s["lr"] for s in tied), sorted(s["lr"] for s in lines)
        )
    return out


def best_lrs(summary: list[Row]) -> dict[Key, float]:
    """Per (workload, optimizer, regime): the best lr (lowest mean final loss, floor ties)."""
    return {k: c.line["lr"] for k, c in choices(summary).items()}


def grid_edge(choice: Choice) -> str | None:
    """ "smallest"/"largest" when the best lr, alone (no tied lr), sits at the grid's end."""
    grid, tied = choice.grid, choice.tied
    if len(grid) < 3 or len(tied) != 1:
        return None
    if tied[0] == grid[0]:
        return "smallest"
    return "largest" if tied[0] == grid[-1] else None


def grid_edge_notes(summary: list[Row]) -> list[str]:
    """Warn where the best lr sits at the end of the grid, clearly better (beyond the floor)
    than every other lr: the optimum may lie beyond it."""
    notes = []
    for (workload, optimizer, regime), choice in sorted(choices(summary).items()):
        side = grid_edge(choice)
        if side:
            notes.append(
                f"{workload} [{regime}] {optimizer}: the best lr {choice.line['lr']:g} is the "
                f"{side} tried; a wider grid may do better."
            )
    return notes


def row_notes(summary: list[Row]) -> dict[tuple[str, str, str, float], list[str]]:
    """Short notes for the table rows they concern, keyed by (workload, optimizer, regime, lr)."""
    notes: dict[tuple[str, str, str, float], list[str]] = defaultdict(list)
    for (workload, optimizer, regime), choice in choices(summary).items():
        lr = choice.line["lr"]
        side = grid_edge(choice)
        if side:
            notes[(workload, optimizer, regime, lr)].append(
                f"best lr is the {side} tried: a wider grid may do better"
            )
        if len(choice.tied) > 1:
            others = ", ".join(f"{x:g}" for x in choice.tied if x != lr)
            notes[(workload, optimizer, regime, lr)].append(
                f"tied within the floor with lr {others}"
            )
    for s in summary:
        if s["diverged"] > 0:
            notes[(s["workload"], s["optimizer"], s["regime"], s["lr"])].append(
                f"{s['diverged']} of {s['seeds']} seeds diverged"
            )
    return dict(notes)


# ---------------------------------------------------------------- headline


@dataclass
class Verdict:
    """One headline line: which optimizer wins on one metric, if any clearly does."""

    metric: str
    winner: str | None  # None: no clear winner (or nothing to compare)
    leaders: list[str]  # the winner, or those whose intervals overlap the best one's
    text: str


def _fmt_num(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}g}"


def _ms(mean: float, std: float, digits: int = 3) -> str:
    return f"{mean:.{digits}g} ± {std:.2g}"


def verdict(
    metric: str,
    values: dict[str, tuple[float, float]],
    lower_is_better: bool,
    resolution: float,
    digits: int = 3,
) -> Verdict:
    """Winner on one metric from each optimizer's (mean, std) over seeds.

    Two optimizers are separated when ``|mean_a - mean_b| > std_a + std_b + resolution``
    (their mean ± std intervals, widened by the resolution, do not overlap). The best mean
    wins only when it is separated from every other optimizer.
    """
    items = sorted(
        ((o, m, s) for o, (m, s) in values.items() if math.isfinite(m)),
        key=lambda t: (t[1] if lower_is_better else -t[1], t[0]),
    )
    if not items:
        return Verdict(metric, None, [], "nothing to compare.")
    best = items[0]
    leaders = [o for o, m, s in items if abs(m - best[1]) <= s + best[2] + resolution]

    def show(o: str) -> str:
        m, s = values[o]
        return f"{o} {_ms(m, s, digits)}"

    rest = [o for o, _, _ in items if o not in leaders]
    tail = f"; then {', '.join(show(o) for o in rest)}" if rest else ""
    if len(items) == 1:
        return Verdict(metric, best[0], [best[0]], f"only {show(best[0])}.")
    if len(leaders) == 1:
        return Verdict(metric, best[0], leaders, f"{best[0]} wins: {show(best[0])}{tail}.")
    return Verdict(
        metric,
        None,
        leaders,
        f"no clear winner: {', '.join(show(o) for o in leaders)} overlap{tail}.",
    )


def headline(summary: list[Row], workload: str, regime: str) -> list[Verdict]:
    """The conclusions for one (workload, regime), each optimizer at its best lr."""
    best = {
        k[1]: c.line for k, c in choices(summary).items() if k[0] == workload and k[2] == regime
    }
    if not best:
        return []
    floor = loss_floor(summary, workload)
    loss = verdict(
        "final training loss",
        {o: (s["final_loss"][0], s["final_loss"][1]) for o, s in best.items()},
        True,
        floor,
    )
    means = [best[o]["final_loss"][0] for o in loss.leaders]
    if len(loss.leaders) > 1 and max(means) - min(means) <= floor:
        loss.text = loss.text.replace(" overlap", f" tie (within the round-off floor {floor:.2g})")
    out = [loss]
    if any("final_acc" in s for s in best.values()):
        out.append(
            verdict(
                "held-out accuracy",
                {
                    o: (s["final_acc"][0], s["final_acc"][1])
                    for o, s in best.items()
                    if "final_acc" in s
                },
                False,
                0.0,
            )
        )
    with_target = [s for s in best.values() if s.get("target") is not None]
    if with_target:
        everyone = {
            o: _mean_std([float(x) for x in s.get("steps_to_target_runs", [])])
            for o, s in best.items()
            if s.get("target") is not None and s["reached"] == s["seeds"]
        }
        missed = [
            f"{o} ({s['reached']}/{s['seeds']} seeds)"
            for o, s in sorted(best.items())
            if s.get("target") is not None and s["reached"] < s["seeds"]
        ]
        metric = "steps to target"
        if everyone:
            v = verdict(metric, everyone, True, float(with_target[0]["eval_every"]), digits=4)
        else:
            v = Verdict(metric, None, [], "no optimizer reached the target on every seed.")
        if missed and everyone:
            v.text = v.text[:-1] + f"; not reached on every seed: {', '.join(missed)}."
        out.append(v)
    return out


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
    else:  # mean training CPU seconds at each evaluated step
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


def _legend_outside(ax: Any) -> None:
    """The legend to the right of the axes, never over the data."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def _log_floor(ax: Any, floor: float) -> None:
    """Log loss axis whose lower limit is at least ``floor`` (values are clipped to it)."""
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    ax.set_ylim(max(low, floor), max(high, floor * 10))


@dataclass
class Plots:
    """What the plots of one workload need: its runs, choices and fixed settings."""

    workload: str
    rows: list[Row]
    summary: list[Row]
    info: Workload | None
    chosen: dict[Key, float] = field(init=False)
    regimes: list[str] = field(init=False)
    optimizers: list[str] = field(init=False)
    floor: float = field(init=False)
    positive: bool = field(init=False)

    def __post_init__(self) -> None:
        self.rows = [r for r in self.rows if r["spec"]["workload"] == self.workload]
        self.chosen = best_lrs(self.summary)
        self.regimes = sorted({r["spec"]["regime"] for r in self.rows})
        self.optimizers = list(dict.fromkeys(r["spec"]["optimizer"] for r in self.rows))
        self.floor = loss_floor(self.summary, self.workload)
        self.positive = all(
            e["train_loss"] > 0
            for r in self.rows
            for e in r["evals"]
            if math.isfinite(e["train_loss"])
        )

    def best_runs(self, opt: str, regime: str) -> list[Row]:
        lr = self.chosen.get((self.workload, opt, regime))
        return [
            r
            for r in self.rows
            if r["spec"]["optimizer"] == opt
            and r["spec"]["regime"] == regime
            and r["spec"]["lr"] == lr
            and not r["diverged"]
        ]

    def clip(self, values: np.ndarray, key: str) -> np.ndarray:
        if key == "train_loss" and self.positive:
            return np.maximum(values, self.floor)
        return values

    def label(self, opt: str, regime: str) -> str:
        return f"{opt} (lr {self.chosen[(self.workload, opt, regime)]:g})"

    def describe(self) -> str:
        about = self.info.summary if self.info is not None else "your model"
        return f"{self.workload} ({about})"

    def floor_text(self) -> str:
        if not self.positive:
            return "linear loss axis (the loss takes non-positive values)"
        return (
            f"loss axis clipped at the round-off floor {self.floor:.2g} "
            f"({REL_FLOOR:g} × max(start loss, 1)); lower values are drawn at the floor"
        )


def _regime_row(p: Plots, width: float, height: float) -> tuple[Any, Any]:
    """A figure with one panel per regime side by side (and room for the legend)."""
    return pyplot().subplots(
        1, len(p.regimes), squeeze=False, figsize=(width * len(p.regimes) + 1.8, height),
        layout="constrained",
    )  # fmt: skip


def curves_figure(p: Plots) -> Any:
    """Loss vs step and vs seconds (and held-out accuracy), one row per regime."""
    plt = pyplot()
    has_acc = any("test_acc" in e for r in p.rows for e in r["evals"])
    panels = [("train_loss", "step", "training loss vs step")]
    panels.append(("train_loss", "time", "training loss vs training CPU seconds"))
    if has_acc:
        panels.append(("test_acc", "step", "held-out accuracy vs step"))
    fig, axes = plt.subplots(
        len(p.regimes),
        len(panels),
        squeeze=False,
        figsize=(4.6 * len(panels) + 1.8, 3.6 * len(p.regimes)),
        layout="constrained",
    )
    for i, regime in enumerate(p.regimes):
        for j, (key, x, title) in enumerate(panels):
            ax = axes[i][j]
            for opt in p.optimizers:
                runs = p.best_runs(opt, regime)
                if not runs:
                    continue
                xs, ys = _curves(runs, key, x)
                ys = p.clip(ys, key)
                color = optimizer_color(opt)
                ax.plot(xs, np.nanmean(ys, axis=0), color=color, label=p.label(opt, regime))
                if len(runs) > 1:
                    ax.fill_between(
                        xs,
                        np.nanmin(ys, axis=0),
                        np.nanmax(ys, axis=0),
                        color=color,
                        alpha=0.2,
                        linewidth=0,
                    )
            if key == "train_loss" and p.positive:
                _log_floor(ax, p.floor)
            ax.set_title(f"{p.workload} [{regime}]: {title}", fontsize=9)
            ax.set_xlabel("CPU seconds" if x == "time" else "step")
            ax.grid(alpha=0.3)
        _legend_outside(axes[i][-1])
    return fig


def lr_figure(p: Plots) -> Any:
    """Final loss vs lr, one line per optimizer (x marks an lr where every seed diverged)."""
    fig, axes = _regime_row(p, width=4.8, height=3.6)
    for i, regime in enumerate(p.regimes):
        ax = axes[0][i]
        for opt in p.optimizers:
            lines = sorted(
                (
                    s
                    for s in p.summary
                    if s["workload"] == p.workload
                    and s["optimizer"] == opt
                    and s["regime"] == regime
                ),
                key=lambda s: s["lr"],
            )
            ok = [s for s in lines if s["diverged"] < s["seeds"]]
            color = optimizer_color(opt)
            if ok:
                ys = p.clip(np.array([s["final_loss"][0] for s in ok], dtype=float), "train_loss")
                ax.plot([s["lr"] for s in ok], ys, "o-", color=color, label=opt)
            bad = [s["lr"] for s in lines if s["diverged"] == s["seeds"]]
            if bad:
                top = max((s["final_loss"][0] for s in ok), default=1.0)
                ax.plot(bad, [top] * len(bad), "x", color=color, markersize=9)
        ax.set_xscale("log")
        if p.positive:
            _log_floor(ax, p.floor)
        ax.set_title(f"{p.workload} [{regime}]: final loss vs lr (x = diverged)", fontsize=9)
        ax.set_xlabel("learning rate")
        ax.grid(alpha=0.3)
    _legend_outside(axes[0][-1])
    return fig


def ratio_figure(p: Plots) -> Any | None:
    """Update-to-weight ratio ``||w_t - w_{t-1}|| / ||w_{t-1}||`` per step (the telemetry of
    each run) at each optimizer's best lr, one panel per regime; None for runs recorded
    before the weight norm was (no ``param_norm``)."""
    if not all(r.get("param_norm") for r in p.rows):
        return None
    fig, axes = _regime_row(p, width=4.6, height=3.4)
    from ..guards import MAX_UPDATE_RATIO

    for ax, regime in zip(axes[0], p.regimes, strict=True):
        for opt in p.optimizers:
            runs = p.best_runs(opt, regime)
            if not runs:
                continue
            length = min(len(r["param_norm"]) for r in runs)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratios = np.array(
                    [np.divide(r["update_norm"][:length], r["param_norm"][:length]) for r in runs]
                )
            ratios[~np.isfinite(ratios) | (ratios <= 0)] = np.nan
            if np.isnan(ratios).all():
                continue
            steps = np.arange(1, length + 1)
            ax.plot(steps, np.nanmean(ratios, axis=0), color=optimizer_color(opt),
                    label=p.label(opt, regime), linewidth=1)  # fmt: skip
        ax.axhline(1e-3, color="grey", linestyle=":", linewidth=1, label="rule of thumb 1e-3")
        ax.axhline(MAX_UPDATE_RATIO, color="grey", linestyle="--", linewidth=1,
                   label=f"guard threshold {MAX_UPDATE_RATIO:g}")  # fmt: skip
        ax.set_yscale("log")
        ax.set_title(f"{p.workload} [{regime}]: update / weight norm per step", fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    _legend_outside(axes[0][-1])
    return fig


def trajectory_figure(p: Plots) -> Any | None:
    """Paths over the landscape's contours, clipped to the workload's frame (2-D only)."""
    info = p.info
    if info is None or info.landscape is None or info.bounds is None:
        return None
    plt = pyplot()
    x0, x1, y0, y1 = info.bounds
    gx, gy = np.meshgrid(np.linspace(x0, x1, 300), np.linspace(y0, y1, 300))
    z = info.landscape(gx, gy)
    fig, ax = plt.subplots(figsize=(7.8, 5), layout="constrained")
    shifted = z - z.min() + 1e-3
    ax.contour(
        gx,
        gy,
        shifted,
        levels=np.geomspace(shifted.min(), shifted.max(), 30),
        cmap="Greys",
        linewidths=0.6,
    )
    regime = p.regimes[0]
    for opt in p.optimizers:
        runs = p.best_runs(opt, regime)
        if runs and runs[0]["points"]:
            pts = np.array(runs[0]["points"], dtype=float)
            ax.plot(
                pts[:, 0],
                pts[:, 1],
                "-",
                color=optimizer_color(opt),
                linewidth=1.2,
                label=p.label(opt, regime),
                clip_on=True,
            )
            ax.plot(pts[0, 0], pts[0, 1], "o", color="black", markersize=4)
    if info.optimum is not None:
        ax.plot(*info.optimum, "*", color="gold", markersize=14, markeredgecolor="black")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_autoscale_on(False)
    ax.set_title(f"{p.workload}: paths at each optimizer's best lr (seed 0)", fontsize=9)
    _legend_outside(ax)
    return fig


def plot_workload(
    workload: str,
    rows: list[Row],
    summary: list[Row],
    info: Workload | None,
    folder: Path,
) -> list[tuple[str, Path]]:
    """Every plot for one workload; returns (caption, path) pairs, captions about it."""
    p = Plots(workload, rows, summary, info)
    if not p.rows:
        return []
    seeds = max((s["seeds"] for s in summary if s["workload"] == workload), default=1)
    target = info.target if info is not None else None
    target_text = (
        f" The target of 'steps to target' is a training loss of {target:g}." if target else ""
    )
    figures = [
        (
            f"{p.describe()}: training loss at each optimizer's best lr against steps and "
            f"training CPU seconds; line = mean over {seeds} seed(s), band = min-max; "
            f"{p.floor_text()}.{target_text}",
            save_figure(curves_figure(p), folder / f"{workload}-curves.png"),
        ),
        (
            f"{p.describe()}: sensitivity to the learning rate, mean final training loss "
            f"per lr tried (x: every seed diverged); {p.floor_text()}.",
            save_figure(lr_figure(p), folder / f"{workload}-lr-sensitivity.png"),
        ),
    ]
    fig = ratio_figure(p)
    supervised = any("test_loss" in e for r in p.rows for e in r["evals"])  # weights to scale
    if fig is not None and supervised:
        figures.append(
            (
                f"{p.describe()}: telemetry of each optimizer at its best lr, the update-to-"
                "weight ratio ||w_t - w_(t-1)|| / ||w_(t-1)|| of every step (mean over seeds); "
                "dotted: the ~1e-3 rule of thumb, dashed: descentlab.guard's threshold for "
                "large pretrained layers.",
                save_figure(fig, folder / f"{workload}-update-ratio.png"),
            )
        )
    elif fig is not None:
        pyplot().close(fig)
    fig = trajectory_figure(p)
    if fig is not None:
        figures.append(
            (
                f"{p.describe()}: seed 0's path for each optimizer at its best lr over the "
                "contours of the loss (black dot: start, star: minimum); the frame is fixed "
                "and paths that leave it are cut at its edge.",
                save_figure(fig, folder / f"{workload}-trajectories.png"),
            )
        )
    return figures


# ---------------------------------------------------------------- documents


RULES = (
    "Each optimizer is shown at its best learning rate: the lowest mean final training loss "
    "over seeds. Losses closer than the workload's round-off floor "
    f"({REL_FLOOR:g} × max(start loss, 1)) count as equal, both for that choice (ties go to "
    "the lr reaching the target on more seeds, then in fewer steps) and for the verdicts. "
    "A verdict names a winner only when its mean ± std interval over seeds, widened by the "
    "floor (losses) or one evaluation interval (steps to target), overlaps no other "
    "optimizer's; otherwise it says no clear winner and lists those that overlap the best. "
    + TIMING
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
        starts = _finite(s.get("start_loss") for s in mine)
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
            definitions.append("One seed: no spread, so verdicts compare single runs.")
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
