"""Learning-rate grids found, not guessed: an lr range test (Smith, 2017) per optimizer.

One short run raises the lr geometrically at every step, from ``LOW`` to ``HIGH``, and
records the training loss of each step's batch; it stops once the (smoothed) loss has
blown up. The loss falls fastest somewhere below the lr at which it is lowest, and blows up
above it: the grid is centred a decade below that lr (``CENTER_BELOW``, the usual "minimum
/ 10" rule) and spans ``GRID_POINTS`` lrs half a decade apart, so it brackets the best
fixed lr in most cases. :func:`widen` then moves past an edge where the sweep's best lr
still sits at one.

The test is cached per (workload, options, optimizer, regime) in ``lr_range.json`` of the
output folder (written atomically), so a resumed sweep gets the same grid.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .decide import choices, grid_edge
from .files import write_json
from .spec import OptimizerSpec, Regime
from .store import folder_lock
from .summary import summarize
from .training import OPTIMIZERS, RunSpec, minibatches, param_groups
from .workloads import Problem

LOW, HIGH = 1e-6, 1e2  # the lrs the test sweeps between
TEST_STEPS = 120  # steps of the test: 8 decades, 15 steps per decade
SMOOTHING = 0.9  # EMA of the batch loss (bias-corrected), as in fastai's lr finder
BLOW_UP = 4.0  # stop once the smoothed loss exceeds this many times its minimum
CENTER_BELOW = 10.0  # the grid's centre: the lr of the lowest smoothed loss / 10
GRID_POINTS = 7
GRID_STEP = 10**0.5  # half a decade between neighbouring lrs


@dataclass(frozen=True)
class RangeTest:
    """The lrs tried, the smoothed loss at each, and where the grid is centred."""

    lrs: list[float]
    losses: list[float]
    best_lr: float  # the lr of the lowest smoothed loss
    center: float

    def grid(self, points: int = GRID_POINTS) -> list[float]:
        """``points`` lrs half a decade apart, centred on ``center``."""
        half = (points - 1) / 2
        return [_round(self.center * GRID_STEP ** (k - half)) for k in range(points)]


def _round(lr: float) -> float:
    return float(f"{lr:.2g}")


def range_test(
    build: Callable[[int, dict[str, Any]], Problem],
    optimizer: OptimizerSpec,
    regime: Regime,
    options: dict[str, Any],
    *,
    steps: int = TEST_STEPS,
    seed: int = 0,
) -> RangeTest:
    """Run the lr range test on a fresh instance (``seed``) of the workload."""
    problem = build(seed, dict(options))
    cls = OPTIMIZERS[optimizer.name]
    opt = cls(param_groups(problem.params, optimizer), lr=LOW, **optimizer.kwargs())
    gen = torch.Generator().manual_seed(20_000 + seed)
    batch = regime.batch_size(problem.n_train)
    batches = iter(minibatches(problem.n_train, batch, gen)) if batch and problem.n_train else None
    factor = (HIGH / LOW) ** (1 / max(1, steps - 1))
    lrs: list[float] = []
    smoothed: list[float] = []
    avg, best = 0.0, math.inf
    for step in range(steps):
        lr = LOW * factor**step
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad()
        loss = problem.loss(next(batches) if batches is not None else None)
        value = float(loss.detach())
        if not math.isfinite(value):
            break
        loss.backward()
        opt.step()
        avg = SMOOTHING * avg + (1 - SMOOTHING) * value
        smooth = avg / (1 - SMOOTHING ** (step + 1))
        lrs.append(lr)
        smoothed.append(smooth)
        best = min(best, smooth)
        if step > 5 and smooth > BLOW_UP * best:
            break
    if not lrs:  # diverged at once: the smallest lr is the only information
        return RangeTest([], [], LOW, LOW)
    best_lr = lrs[min(range(len(smoothed)), key=smoothed.__getitem__)]
    return RangeTest(lrs, smoothed, best_lr, max(LOW, best_lr / CENTER_BELOW))


def cached_grid(
    folder: Path,
    key: str,
    run: Callable[[], RangeTest],
) -> RangeTest:
    """The range test stored under ``key`` in ``folder/lr_range.json``, or run and store it."""
    path = folder / "lr_range.json"
    with folder_lock(folder):
        stored = _read_cache(path)
    if key in stored:
        return RangeTest(**stored[key])
    result = run()
    with folder_lock(folder):  # another process may have added tests meanwhile
        stored = _read_cache(path)
        stored.setdefault(key, asdict(result))
        write_json(path, stored)
    return RangeTest(**stored[key])


def _read_cache(path: Path) -> dict[str, Any]:
    """The stored range tests; a file that cannot be read as such (cut short, edited, of
    another version) is moved aside, with a warning, and the tests are run again."""
    if not path.is_file():
        return {}
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(stored, dict):
            raise ValueError("not a map of range tests")
        for entry in stored.values():
            RangeTest(**entry).grid()  # every entry must make a grid
        return stored
    except (ValueError, TypeError, KeyError, ZeroDivisionError) as exc:
        aside = path.with_name(f"{path.name}.unreadable")
        os.replace(path, aside)
        warnings.warn(
            f"{path}: unreadable ({exc}); moved to {aside.name}, the lr range tests run again",
            RuntimeWarning,
            stacklevel=3,
        )
        return {}


def beyond(grid: list[float], side: str, points: int = 2) -> list[float]:
    """``points`` more lrs past the ``"smallest"`` or ``"largest"`` end of ``grid``."""
    lrs = sorted(grid)
    if side == "smallest":
        return [_round(lrs[0] / GRID_STEP**k) for k in range(1, points + 1)]
    return [_round(lrs[-1] * GRID_STEP**k) for k in range(1, points + 1)]


WIDEN_ROUNDS = 3  # at most this many times two lrs are added beyond a grid's edge


def auto_grid(
    folder: Path,
    build: Callable[[int, dict[str, Any]], Problem],
    template: RunSpec,
    options: dict[str, Any],
    notes: list[str],
) -> list[float]:
    """The grid of :mod:`.lrfind`'s range test for one (workload, optimizer, regime)."""
    key = json.dumps(
        [template.workload, template.optimizer.label, template.regime.label,
         sorted(options.items()), template.fingerprint], default=str,
    )  # fmt: skip
    test = cached_grid(
        folder,
        key,
        lambda: range_test(build, template.optimizer, template.regime, options),
    )
    grid = test.grid()
    notes.append(
        f"{template.workload} [{template.regime.label}] {template.optimizer.label}: lr range "
        f"test: lowest smoothed loss at lr {test.best_lr:.2g}, so the grid is "
        f"{', '.join(f'{lr:g}' for lr in grid)}."
    )
    return grid


def widen(
    rows: list[dict[str, Any]],
    targets: dict[str, float | None],
    templates: dict[tuple[str, str, str], RunSpec],
    seeds: int,
    notes: list[str],
) -> list[RunSpec]:
    """Runs two lrs past each grid edge where the best lr still sits alone."""
    more = []
    for key, choice in sorted(choices(summarize(rows, targets)).items()):
        side = grid_edge(choice)
        if side is None or key not in templates:
            continue
        added = [lr for lr in beyond(choice.grid, side) if lr not in choice.grid]
        notes.append(
            f"{key[0]} [{key[2]}] {key[1]}: the best lr {choice.line['lr']:g} was the {side} "
            f"of the grid; added {', '.join(f'{lr:g}' for lr in added)}."
        )
        template = templates[key]
        more += [
            dataclasses.replace(template, lr=lr, seed=seed) for lr in added for seed in range(seeds)
        ]
    return more
