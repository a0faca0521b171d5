"""The report's figures: loss curves, lr sensitivity, update-to-weight ratio, 2-D paths.

Each optimizer is drawn at its best lr (:func:`descentlab.lab.decide.best_lrs`) in one colour
in every plot and every report (:func:`optimizer_color`); loss axes stop at the workload's
round-off floor (:func:`descentlab.lab.decide.loss_floor`). :func:`pyplot` and
:func:`save_figure` are shared with the experiments of ``reproduce``.
"""

from __future__ import annotations

import math
import statistics
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .decide import REL_FLOOR, best_lrs, loss_floor
from .summary import Key, Row
from .workloads import Workload

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
    from ..diagnostics.guards import MAX_UPDATE_RATIO

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
