"""The progress line of a sweep on the terminal: the run being trained, "N of M", the time
left. :func:`run_with_progress` runs a sweep through an executor with that line on stderr."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .executors import Executor, sweep_with
from .store import Store
from .training import RunSpec

__all__ = ["SweepProgress", "clock", "run_with_progress"]


def clock(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class SweepProgress:
    """What the progress line says: the run being trained, "N of M", the time left.

    The time left is the training steps not yet run times the wall seconds per step seen so
    far on that workload (on any workload until one of its runs has finished); runs read
    back from ``runs.jsonl`` take no time and are never shown as being trained. The wall
    seconds from one finished run to the next go to the run that finished, so runs trained
    together (a batch, a pool's runs in flight) share them.
    """

    def __init__(self, specs: list[RunSpec], cached: set[str]) -> None:
        self.total = len(specs)
        self.done = 0
        self.read_back = 0  # runs found finished in runs.jsonl
        self.current: RunSpec | None = None  # the run started last, while any is training
        self.training = 0  # runs started and not yet finished
        self.began = 0.0  # when the time of the next run to finish began
        self.pending = {spec.id for spec in specs if spec.id not in cached}
        self.left: dict[str, int] = {}  # steps still to train, per workload
        for spec in specs:
            if spec.id in self.pending:
                self.left[spec.workload] = self.left.get(spec.workload, 0) + spec.steps
        self.spent: dict[str, tuple[float, int]] = {}  # wall seconds and steps, per workload

    def start(self, spec: RunSpec) -> None:
        if not self.training:
            self.began = time.perf_counter()
        self.training += 1
        self.current = spec

    def finish(self, spec: RunSpec, cached: bool) -> None:
        self.done += 1
        self.read_back += cached
        if self.training and not cached:
            now = time.perf_counter()
            seconds, steps = self.spent.get(spec.workload, (0.0, 0))
            self.spent[spec.workload] = (seconds + now - self.began, steps + spec.steps)
            self.began = now
            self.training -= 1
        if spec.id in self.pending:  # trained here, or by another process meanwhile
            self.pending.discard(spec.id)
            self.left[spec.workload] -= spec.steps
        if not self.training:
            self.current = None

    def eta(self) -> float | None:
        """Estimated wall seconds left, None before any run finished."""
        if not self.spent:
            return None
        total_s = sum(s for s, _ in self.spent.values())
        total_n = sum(n for _, n in self.spent.values())
        left = 0.0
        for workload, steps in self.left.items():
            seconds, n = self.spent.get(workload, (total_s, total_n))
            left += steps * seconds / max(n, 1)
        if self.current is not None:
            left -= time.perf_counter() - self.began
        return max(0.0, left)

    def text(self) -> str:
        eta = self.eta()
        when = "ETA " + (clock(eta) if eta is not None else "estimating")
        spec = self.current
        old = f" ({self.read_back} read back)" if self.read_back else ""
        if spec is None:
            return f"{self.done} of {self.total} runs done{old}, {when}"
        if self.training > 1:  # a batch, or a pool's runs in flight
            return (
                f"runs {self.done + 1}-{self.done + self.training} of {self.total}{old}, "
                f"{when}: {spec.workload} {spec.optimizer.label} [{spec.regime.label}]"
            )
        return (
            f"run {self.done + 1} of {self.total}{old}, {when}: {spec.workload} "
            f"{spec.optimizer.label} lr={spec.lr:g} seed={spec.seed} [{spec.regime.label}]"
        )


def run_with_progress(
    specs: list[RunSpec], builds: dict[str, Any], folder: Path, progress: bool, executor: Executor
) -> list[dict[str, Any]]:
    if not progress:
        return sweep_with(executor, specs, builds, folder)
    import warnings

    from rich.console import Console
    from rich.progress import BarColumn, Progress, ProgressColumn, Task
    from rich.table import Column
    from rich.text import Text

    with warnings.catch_warnings():  # an unreadable line is reported by the sweep itself
        warnings.simplefilter("ignore", RuntimeWarning)
        cached = set(Store(folder).load())
    state = SweepProgress(specs, cached)

    class Line(ProgressColumn):  # re-rendered on every refresh: the time left counts down
        def render(self, task: Task) -> Text:
            return Text(state.text())

    with Progress(
        BarColumn(bar_width=10),
        Line(table_column=Column(overflow="fold")),
        console=Console(stderr=True),
        transient=True,
        refresh_per_second=2,
    ) as bar:
        task = bar.add_task("training", total=len(specs))

        def show(advance: int = 0) -> None:
            bar.update(task, advance=advance)
            bar.refresh()  # at once, not at the next tick

        def started(spec: RunSpec) -> None:
            state.start(spec)
            show()

        def finished(spec: RunSpec, cached: bool) -> None:
            state.finish(spec, cached)
            show(1)

        show()
        return sweep_with(executor, specs, builds, folder, finished, started)
