"""``compare``: train optimizers side by side on workloads, then write the report."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import platform
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from . import lrfind, report
from .decide import grid_edge_notes
from .errors import LabError
from .executors import Executor, InProcessExecutor
from .files import own_folder, write_json
from .progress import run_with_progress
from .runner import model_build
from .spec import (
    OptimizerSpec,
    Regime,
    parse_named,
    parse_optimizer,
    parse_regime,
)
from .store import folder_lock
from .summary import load_notes
from .training import COMPARE_EVALUATIONS, RunSpec, eval_every, machine_load, steps_for
from .workloads import NET_LRS, WORKLOADS, Problem, Workload, get_workload, supervised_problem

DEFAULT_WORKLOADS = ("ravine", "digits-mlp")
DEFAULT_OPTIMIZERS = ("sgd", "sgd:momentum=0.9", "rmsprop", "adam", "adamw")
MAX_SEEDS = 1000
MAX_STEPS = 10_000_000
"""More steps than any workload here needs by far (digits converges in a few thousand);
a larger budget is a typo (``--steps 1e12``), refused before anything runs."""
MAX_EPOCHS = 100_000


def default_lrs(workload: Workload, opt: OptimizerSpec) -> tuple[float, ...]:
    """The workload's grid for this optimizer family.

    Heavy-ball momentum with coefficient m moves slow directions ``1 / (1 - m)`` times
    faster than plain SGD at the same lr, yet stays stable up to ``1 + m`` times SGD's
    largest lr; the grid of ``sgd:momentum=m`` is plain SGD's times ``sqrt(1 - m**2)``, the
    geometric middle of those two rescalings.
    """
    grid = workload.lrs[opt.name]
    mu = float(opt.kwargs().get("momentum", 0.0))
    if opt.name == "sgd" and 0 < mu < 1:  # torch accepts momentum >= 1 (it diverges)
        grid = tuple(float(f"{lr * (1 - mu**2) ** 0.5:.2g}") for lr in grid)
    return grid


def _check_matrices(
    workload: str, params: Sequence[Any], optimizers: Sequence[OptimizerSpec]
) -> None:
    """Refuse, in one line, an optimizer for matrices (Muon) on a workload with others."""
    for opt in optimizers:
        if opt.name != "muon":
            continue
        other = next((p for p in params if p.ndim != 2), None)
        if other is not None:
            raise LabError(
                f"muon trains matrices only (as torch.optim.Muon), and workload {workload!r} "
                f"has a parameter of shape {tuple(other.shape)}; choose one whose parameters "
                "are all matrices (digits-logreg:bias=0, digits-mlp:bias=0)"
            )


@dataclass
class Result:
    """What :func:`compare` produced: the folder, every run, the summary, the files."""

    folder: Path
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    files: dict[str, Path]
    notes: list[str]


def _writable(out: Any) -> Path:
    """The report folder: new, empty or an earlier compare's (see :func:`own_folder`)."""
    try:
        folder = own_folder(out, "compare", older=("runs.jsonl",))
        with tempfile.TemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except ValueError as exc:
        raise LabError(str(exc)) from None
    except OSError as exc:
        raise LabError(f"cannot write to output folder {str(out)!r}: {exc.strerror}") from None
    return folder


def _check_budget(seeds: Any, epochs: Any, steps: Any) -> None:
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
        raise LabError(f"seeds must be an integer from 1 to {MAX_SEEDS}, got {seeds!r}")
    if steps is not None and epochs is not None:
        raise LabError("give a budget in steps or in epochs, not both")
    if steps is not None and (
        isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS
    ):
        raise LabError(f"steps must be an integer from 1 to {MAX_STEPS:,}, got {steps!r}")
    if epochs is not None and (
        isinstance(epochs, bool)
        or not isinstance(epochs, int | float)
        or not math.isfinite(epochs)
        or not 0 < epochs <= MAX_EPOCHS
    ):
        raise LabError(f"epochs must be a number > 0 and at most {MAX_EPOCHS:,}, got {epochs!r}")


def _fingerprint(model: torch.nn.Module, loss_fn: Any, *tensors: torch.Tensor | None) -> str:
    """A hash of a model's architecture and initial weights, the loss and the data."""
    h = hashlib.sha1()

    def add(t: torch.Tensor) -> None:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())

    h.update(f"{type(model).__module__}.{type(model).__qualname__}\n{model!r}".encode())
    for key, value in model.state_dict().items():
        h.update(key.encode())
        add(value)
    h.update(str([p.requires_grad for p in model.parameters()]).encode())
    h.update(getattr(loss_fn, "__module__", "").encode())
    h.update(getattr(loss_fn, "__qualname__", repr(loss_fn)).encode())
    for t in tensors:
        h.update(b"none" if t is None else b"tensor")
        if t is not None:
            add(t)
    return h.hexdigest()[:16]


def _as_tensors(data: Any) -> tuple[torch.Tensor, torch.Tensor, int | None]:
    """(X, y) tensors/arrays, or a DataLoader (its batch size becomes the regime)."""
    if isinstance(data, torch.utils.data.DataLoader):
        xs, ys = [], []
        for batch in data:
            if not isinstance(batch, list | tuple) or len(batch) != 2:
                raise LabError("a DataLoader for compare must yield (inputs, targets) pairs")
            xs.append(batch[0])
            ys.append(batch[1])
        return torch.cat(xs), torch.cat(ys), data.batch_size
    if isinstance(data, list | tuple) and len(data) == 2:
        x, y = (
            torch.as_tensor(np.asarray(d)) if not isinstance(d, torch.Tensor) else d for d in data
        )
        if len(x) != len(y):
            raise LabError(f"inputs and targets differ in length: {len(x)} vs {len(y)}")
        return x, y, None
    raise LabError("data must be (inputs, targets) or a torch DataLoader yielding such pairs")


def _user_workload(
    model: torch.nn.Module,
    data: Any,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    test_data: Any,
    name: str,
) -> tuple[Workload, Callable[[int, dict[str, Any]], Problem], str]:
    if not isinstance(model, torch.nn.Module):
        raise LabError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    x, y, batch = _as_tensors(data)
    xt, yt = _as_tensors(test_data)[:2] if test_data is not None else (None, None)
    classification = not torch.is_floating_point(y)

    def make(m: torch.nn.Module) -> Problem:
        return supervised_problem(m, x, y, xt, yt, loss_fn, classification)

    build = model_build(model, make)
    problem = build(0, {})  # fail now, with one clear line, on a non-scalar loss
    problem.loss(torch.arange(min(2, len(x))))
    workload = Workload(
        name,
        "your model",
        build,
        NET_LRS,
        epochs=5,
        regime=f"minibatch:{batch}" if batch else "minibatch:32",
    )
    return workload, build, _fingerprint(model, loss_fn, x, y, xt, yt)


EVALUATIONS = COMPARE_EVALUATIONS  # per run (the training core's schedule)
"""Evaluations of the full training (and test) set per run, besides the start: three an
epoch at the default 10 epochs. A run records its mini-batch loss at every step anyway;
these are the points of the full-set curves and fix the resolution of steps-to-target.
(An evaluation of digits costs what about ten training steps do.)"""


def compare(
    workloads: Sequence[str] | str = DEFAULT_WORKLOADS,
    optimizers: Sequence[str | OptimizerSpec] = DEFAULT_OPTIMIZERS,
    lrs: Sequence[float] | str = "auto",
    seeds: int = 3,
    regimes: Sequence[str] | None = None,
    epochs: float | None = None,
    steps: int | None = None,
    out: str | Path = "descentlab-report",
    *,
    model: torch.nn.Module | None = None,
    data: Any = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    test_data: Any = None,
    name: str = "model",
    progress: bool | None = None,
    executor: Executor | None = None,
) -> Result:
    """Train every optimizer x lr x seed x regime on each workload; write the report.

    Args:
        workloads: registry names, with options (``"ravine:kappa=100:noise=0.5"``).
            Ignored when ``model`` is given.
        optimizers: specs such as ``"adam"`` or ``"sgd:momentum=0.9"``.
        lrs: learning rates for every optimizer; ``"auto"`` (default): per workload,
            optimizer and regime, an lr range test (Smith, 2017) places a grid of 7 lrs half
            a decade apart, and a best lr at the grid's edge adds lrs beyond it (up to
            ``lrfind.WIDEN_ROUNDS`` times, see :mod:`descentlab.lab.lrfind`); ``"grid"``: the
            workload's fixed grid (4-5 values per optimizer family).
        seeds: number of seeds (0, 1, ...), at most ``MAX_SEEDS``; the same seed gives the
            same numbers.
        regimes: ``"full"``, ``"sgd"``, ``"minibatch:B"``; default per workload.
        epochs: training budget in passes over the data (equal compute across regimes).
        steps: a fixed number of steps instead (landscapes use it by default); not both.
        out: the report folder; finished runs found there are reused (resume), also by
            several processes at once. ``summary.json`` and ``config.json`` are strict JSON,
            a non-finite number written as ``null``.
        model, data, loss_fn, test_data: compare optimizers on your own ``torch.nn.Module``
            with ``data = (inputs, targets)`` or a ``DataLoader`` of such pairs. The runs are
            keyed by a fingerprint of the model's architecture and initial weights, the loss
            and the data, so another model in the same ``out`` gets runs of its own.
        progress: show the run being trained, "N of M" and an estimated time left on
            stderr; ``None`` (the default): only when stderr is a terminal.
        executor: where runs are trained (:mod:`descentlab.lab.executors`): in this
            process (default), a local process pool, or a Ray cluster; every executor writes
            the same resumable store. ``compare`` does not close it.

    Timings (``time`` and ``seconds`` of each run) are CPU seconds of the process;
    each run and ``config.json`` also record the machine's load average, and the report
    warns when the load was high or differed much between the runs.

    Raises:
        LabError: on any bad input, before anything is trained or written.

    Example:
        >>> import torch, tempfile
        >>> from descentlab.lab import compare
        >>> net = torch.nn.Linear(3, 1)
        >>> x, y = torch.randn(64, 3), torch.randn(64, 1)
        >>> res = compare(model=net, data=(x, y), loss_fn=torch.nn.functional.mse_loss,
        ...               optimizers=["sgd", "adam"], lrs=[1e-2], seeds=1, epochs=2,
        ...               out=tempfile.mkdtemp())
        >>> sorted({s["optimizer"] for s in res.summary})
        ['adam', 'sgd']
    """
    # every input is checked before anything is written or trained
    _check_budget(seeds, epochs, steps)
    if executor is not None and not isinstance(executor, Executor):
        raise LabError(
            f"executor must be a descentlab.lab.executors.Executor, got {type(executor).__name__}"
        )
    executor = executor or InProcessExecutor()
    specs_opt = [o if isinstance(o, OptimizerSpec) else parse_optimizer(o) for o in optimizers]
    if not specs_opt:
        raise LabError("no optimizer given; e.g. optimizers=['adam', 'sgd:momentum=0.9']")
    if isinstance(lrs, str):
        if lrs not in LR_MODES:
            raise LabError(f"lrs must be a list of numbers or one of: {', '.join(LR_MODES)}")
    else:
        lrs = list(lrs)
        if not lrs or any(
            isinstance(lr, bool)
            or not isinstance(lr, int | float)
            or not (math.isfinite(lr) and lr > 0)
            for lr in lrs
        ):
            raise LabError(f"learning rates must be finite and > 0, got {lrs}")
    given_regimes = None if regimes is None else [parse_regime(r) for r in regimes]
    if given_regimes is not None and not given_regimes:
        raise LabError("no regime given; choose full, sgd or minibatch:B")
    builds: dict[str, Callable[[int, dict[str, Any]], Problem]] = {}
    chosen: list[tuple[Workload, dict[str, Any]]] = []
    fingerprint = ""
    if model is not None:
        if loss_fn is None or data is None:
            raise LabError("comparing on your model needs model=, data= and loss_fn=")
    else:
        names = [workloads] if isinstance(workloads, str) else list(workloads)
        if not names:
            raise LabError(f"no workload given; choose from: {', '.join(WORKLOADS)}")
        for text in names:
            wname, options = parse_named(text)
            workload = get_workload(wname)
            workload.check_options(options)
            builds[wname] = workload.build
            chosen.append((workload, {**workload.options, **options}))
    if epochs is not None:  # an option a workload would ignore is an error, not a note
        for workload, options in chosen:
            if builds[workload.name](0, options).n_train is None:
                raise LabError(
                    f"workload {workload.name!r} has no data to pass over, so epochs do not "
                    f"apply; give steps instead (its default: {workload.steps})"
                )
    folder = _writable(out)
    if model is not None and loss_fn is not None:
        workload, build, fingerprint = _user_workload(model, data, loss_fn, test_data, name)
        builds[name] = build
        chosen.append((workload, {}))

    specs: list[RunSpec] = []
    notes: list[str] = []
    templates: dict[tuple[str, str, str], RunSpec] = {}  # for widening: all but lr and seed
    for workload, options in chosen:
        probe = builds[workload.name](0, options)
        regime_list = given_regimes or [parse_regime(workload.regime)]
        if probe.n_train is None and not options.get("noise"):
            notes.append(
                f"{workload.name}: no data and no gradient noise, so every seed gives "
                f"the same run (add noise with {workload.name}:noise=0.5)."
            )
        if probe.n_train is None and any(r.kind != "full" for r in regime_list):
            notes.append(f"{workload.name}: no data, so every regime is the exact gradient.")
            regime_list = [Regime("full")]
        budget = epochs if epochs is not None else workload.epochs
        _check_matrices(workload.name, probe.params, specs_opt)
        per_regime = []
        for regime in regime_list:
            n_steps = steps_for(
                workload, probe.n_train, regime.batch_size(probe.n_train), budget, steps
            )
            per_regime.append(f"{regime.label} = {n_steps} steps")
            for opt in specs_opt:
                template = RunSpec(
                    workload.name,
                    opt,
                    0.0,
                    0,
                    regime,
                    n_steps,
                    eval_every(n_steps, EVALUATIONS),
                    tuple(sorted(options.items())),
                    fingerprint,
                )
                templates[(workload.name, opt.label, regime.label)] = template
                if isinstance(lrs, list):
                    grid = lrs
                elif lrs == "grid":
                    grid = list(default_lrs(workload, opt))
                else:
                    grid = lrfind.auto_grid(folder, builds[workload.name], template, options, notes)
                for lr in grid:
                    for seed in range(seeds):
                        specs.append(dataclasses.replace(template, lr=float(lr), seed=seed))
        if steps is None and probe.n_train is not None and budget is not None:
            notes.append(
                f"{workload.name}: equal compute, {budget:g} epochs of "
                f"{probe.n_train} samples per run ({', '.join(per_regime)})."
            )
        else:
            notes.append(f"{workload.name}: equal steps ({', '.join(per_regime)}).")

    load, cpus = machine_load()
    config = {
        "argv": sys.argv,
        "workloads": [[w.name, o] for w, o in chosen],
        "optimizers": [o.label for o in specs_opt],
        "lrs": lrs,
        "seeds": list(range(seeds)),
        "regimes": regimes,
        "epochs": epochs,
        "steps": steps,
        "runs": len(specs),
        "executor": repr(executor),
        "versions": {
            "descentlab": __version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "machine": {
            "platform": platform.platform(),
            "threads": torch.get_num_threads(),
            "cpus": cpus,
            "load": load,  # load average over 1, 5 and 15 minutes when the sweep started
        },
        "timing": "CPU seconds of the process (time.process_time, all of torch's threads)",
    }
    with folder_lock(folder):
        write_json(folder / "config.json", config)
    show = sys.stderr.isatty() if progress is None else progress
    rows = run_with_progress(specs, builds, folder, show, executor)
    if lrs == "auto":
        targets = {w.name: w.target for w, _ in chosen}
        for _ in range(lrfind.WIDEN_ROUNDS):
            more = lrfind.widen(rows, targets, templates, seeds, notes)
            if not more:
                break
            rows += run_with_progress(more, builds, folder, show, executor)
    notes += executor.notes
    notes += load_notes(rows)
    workload_map: dict[str, Workload | None] = {w.name: w for w, _ in chosen}
    title = "descentlab compare: " + ", ".join(workload_map)
    with folder_lock(folder):  # one report writer at a time
        files = report.write_report(folder, title, notes, rows, workload_map)
        summary = json.loads(files["summary_json"].read_text())
    return Result(folder, rows, summary, files, notes + grid_edge_notes(summary))


LR_MODES = ("auto", "grid")


def list_workloads() -> dict[str, str]:
    return {name: w.summary for name, w in WORKLOADS.items()}
