"""The one-by-one runner: train one run, on the reference engine, with telemetry.

:func:`run_one` trains a :class:`~descentlab.lab.training.RunSpec` step by step with the
lab's drop-in optimizer and records it by the training core's rules
(:mod:`descentlab.lab.training`: seeds, divergence, evaluation schedule, recording);
:func:`descentlab.lab.batched.run_batched` trains several at once by the same rules.
:func:`model_build` makes a user's model a workload build.

Each run's per-step ``time`` and its ``seconds`` are CPU seconds of the process, so a
busy machine slows them far less than wall time; ``wall_seconds`` keeps the wall-clock total,
and ``load``/``load_end`` the machine's load average at the run's start and end. A run
trained in a batch (``lab.sweep`` trains the runs of an lr x seed grid together, see
:mod:`descentlab.lab.batched`) records its share of the batch's seconds, and the size of
the batch in ``batch``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from typing import Any

import torch

from ..diagnostics.telemetry import Sample, telemetry
from .training import (
    OPTIMIZERS,
    Record,
    Recorder,
    RunSpec,
    batch_order,
    param_groups,
)
from .workloads import Problem

__all__ = ["model_build", "run_one"]


def run_one(spec: RunSpec, build: Callable[[int, dict[str, Any]], Problem]) -> Record:
    """Train one run; a diverging run stops early and is marked ``diverged``."""
    problem = build(spec.seed, dict(spec.options))
    cls = OPTIMIZERS[spec.optimizer.name]
    groups = param_groups(problem.params, spec.optimizer)
    opt = cls(groups, lr=spec.lr, **spec.optimizer.kwargs(), engine="reference")
    samples: list[Sample] = []  # the last step's, one per group
    telemetry(opt, every=1, on_sample=lambda new: samples.__setitem__(slice(None), new))
    batches = batch_order(spec.regime, problem.n_train, spec.seed)
    recorder = Recorder(spec)

    def evaluation() -> dict[str, float]:
        row = {"train_loss": problem.full_loss()}
        if problem.evaluate is not None:
            row.update(problem.evaluate())
        return row

    def point() -> tuple[float, float] | None:
        return problem.point() if problem.point is not None else None

    recorder.begin(evaluation(), point())
    elapsed = wall = 0.0
    for _ in range(spec.steps):
        t0, w0 = time.process_time(), time.perf_counter()
        opt.zero_grad()
        loss = problem.loss(next(batches) if batches is not None else None)
        loss.backward()
        opt.step()
        elapsed += time.process_time() - t0
        wall += time.perf_counter() - w0
        norms = (
            math.hypot(*(s.grad_norm for s in samples)),
            math.hypot(*(s.update_norm for s in samples)),
            math.hypot(*(s.param_norm for s in samples)),
        )
        due, over = recorder.step(float(loss.detach()), samples[0].lr, norms, elapsed, point())
        if due:
            recorder.evaluated(evaluation())
        if over:
            break
    return recorder.finish(elapsed, wall)


def model_build(
    model: torch.nn.Module, make: Callable[[torch.nn.Module], Problem]
) -> Callable[[int, dict[str, Any]], Problem]:
    """A build function for a user's model: each run starts from a copy of its weights."""

    def build(seed: int, options: dict[str, Any]) -> Problem:
        torch.manual_seed(seed)
        return make(copy.deepcopy(model))

    return build
