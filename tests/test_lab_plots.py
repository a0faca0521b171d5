"""The report's figures: the loss axis at the round-off floor, one colour per optimizer,
legends outside the data, 2-D paths inside the workload's frame."""

from __future__ import annotations

from typing import Any

import matplotlib
import pytest

from descentlab.lab import WORKLOADS, plots
from descentlab.lab.summary import summarize
from lab_records import START, ravine_like, run_record

matplotlib.use("Agg")


def _plots(workload: str, rows: list[dict[str, Any]]) -> plots.Plots:
    summary = summarize(rows, {workload: None})
    return plots.Plots(workload, rows, summary, WORKLOADS.get(workload))


def _line_colors(fig: Any) -> dict[str, str]:
    colors = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            label = line.get_label().split(" (")[0]
            if not label.startswith("_"):
                colors[label] = matplotlib.colors.to_hex(line.get_color())
    return colors


def test_loss_axis_stops_at_the_floor_and_colours_follow_the_label() -> None:
    plt = plots.pyplot()
    p = _plots("toy", ravine_like())
    curves, lrs = plots.curves_figure(p), plots.lr_figure(p)
    for ax in [*curves.axes[:2], lrs.axes[0]]:
        assert ax.get_yscale() == "log"
        assert ax.get_ylim()[0] == pytest.approx(1e-12 * START)
    # the same optimizer has the same colour in every plot and in another workload
    other = _plots("other", [run_record("q", 0.1, 0, [1.0], workload="other")])
    other_fig = plots.curves_figure(other)
    for fig in (curves, lrs):
        assert _line_colors(fig)["q"] == plots.optimizer_color("q")
    assert _line_colors(other_fig)["q"] == plots.optimizer_color("q")
    assert plots.optimizer_color("adam") != plots.optimizer_color("adamw")
    # legends sit right of the data area
    curves.canvas.draw()
    legend = curves.axes[1].get_legend()
    assert legend.get_window_extent().x0 >= curves.axes[1].get_window_extent().x1
    for fig in (curves, lrs, other_fig):
        plt.close(fig)


def test_trajectories_stay_in_the_workload_frame() -> None:
    plt = plots.pyplot()
    rows = [
        run_record(
            "adamw", 0.1, 0, [1.0, 0.5], workload="ravine", points=[(-4, 1.5), (50, 80), (0, 0)]
        )
    ]
    p = _plots("ravine", rows)
    fig = plots.trajectory_figure(p)
    ax = fig.axes[0]
    x0, x1, y0, y1 = WORKLOADS["ravine"].bounds
    assert ax.get_xlim() == (x0, x1) and ax.get_ylim() == (y0, y1)
    path = next(line for line in ax.get_lines() if line.get_label().startswith("adamw"))
    assert path.get_clip_on()
    plt.close(fig)
