"""``descentlab reproduce``: every claim of the seed document as a measured experiment.

Each claim is split into the statements it makes; each statement's criteria are written in
its definition, before anything runs, and its verdict is computed from the measured
figures alone. Results are saved per claim (atomically, fsynced) as they finish, keyed by
a fingerprint of the experiment's code and configuration, so an interrupted run resumes
with the claims it has not done yet and a code change measures again what it touches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..lab.compare import MAX_SEEDS
from ..lab.errors import LabError
from ..lab.files import own_folder, write_json
from . import (
    adaptive,
    decay,
    finetune,
    generalization,
    momentum,
    properties,
    regimes,
    seed_code,
    stale_momentum,
    zero_grad,
)
from .base import (
    EXACT,
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    NOT_RESOLVED,
    NOT_TESTED,
    PARTLY,
    Claim,
    Context,
    summary,
)
from .common import one_thread
from .document import write_report

CLAIMS: tuple[Claim, ...] = (
    regimes.CLAIM,
    momentum.RAVINE,
    momentum.NOISE,
    momentum.SADDLE,
    adaptive.SCALES,
    adaptive.COMPOSITION,
    adaptive.BIAS,
    generalization.CLAIM,
    finetune.CLAIM,
    zero_grad.CLAIM,
    stale_momentum.CLAIM,
    decay.CLAIM,
    seed_code.CLAIM,
    properties.CLAIM,
)
BY_KEY = {c.key: c for c in CLAIMS}

__all__ = [
    "BY_KEY",
    "CLAIMS",
    "EXACT",
    "FAILS",
    "HOLDS",
    "INCONCLUSIVE",
    "NOT_RESOLVED",
    "NOT_TESTED",
    "PARTLY",
    "fingerprint",
    "reproduce",
]

_PACKAGE = Path(__file__).resolve().parent.parent
# Everything an experiment's result can depend on, besides its own module.
_SHARED = (
    "reproduce/base.py",
    "reproduce/common.py",
    "reproduce/digits.py",
    "reproduce/seeds.py",
    "lab",
    "rules",
    "engines",
    "diagnostics",
    "numpy.py",
    "torch",
    "optimizers.py",
    "tools/demo.py",
)


def fingerprint(claim: Claim, config: dict[str, Any]) -> str:
    """A hash of the claim's code (its module and everything shared it runs on) and of the
    run's configuration: a saved result is reused only while this stays the same."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    files = [Path(inspect.getfile(claim.measure))]
    for name in _SHARED:
        path = _PACKAGE / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _load(
    path: Path, claim: Claim, fp: str, progress: Callable[[str], None]
) -> dict[str, Any] | None:
    """A saved result still valid for this code and configuration, or None (measure again)."""
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(saved, dict) or "fingerprint" not in saved:
            raise ValueError("not a saved claim")
        if saved["fingerprint"] != fp:
            progress(f"{claim.key}: code or configuration changed since it was measured")
            return None
        samples = {k: [float(v) for v in vs] for k, vs in saved.get("samples", {}).items()}
        judgements = claim.judge(saved["figures"], saved.get("flags", {}), samples)
        if [j.label for j in judgements] != [j["label"] for j in saved["statements"]]:
            raise ValueError("its verdicts do not follow from its figures")
        return saved
    except (ValueError, KeyError, TypeError, OSError) as exc:
        progress(f"warning: {path} is unreadable ({exc!s:.80}); measuring {claim.key} again")
        return None


def _select(only: list[str] | None) -> list[Claim]:
    if only is None:
        return list(CLAIMS)
    if not only:
        raise LabError(f"no claim given; choose from: {', '.join(BY_KEY)}")
    unknown = [k for k in only if k not in BY_KEY]
    if unknown:
        raise LabError(f"unknown claim {unknown[0]!r}; choose from: {', '.join(BY_KEY)}")
    return [BY_KEY[k] for k in only]


# The claims' rough cost in seconds on one core (full run): the longest are started first,
# so that parallel processes finish together. Only the order depends on these.
_COST = {
    "adam-vs-sgd": 75.0,
    "regimes": 22.0,
    "adam-l2-vs-adamw": 15.0,
    "bias-correction": 12.0,
    "finetune-lr": 5.0,
}


def reproduce(
    out: str | Path = "descentlab-reproduce",
    quick: bool = False,
    only: list[str] | None = None,
    seeds: int | None = None,
    progress: Callable[[str], None] = lambda s: None,
    jobs: int = 1,
) -> dict[str, Any]:
    """Run the claims (all, or ``only``), write ``report.md`` and ``index.html`` in ``out``.

    ``jobs=1`` (the default here) measures the claims to measure one after another in this
    process; more run them in that many fresh processes (at most one per claim), each
    experiment on one torch thread so that they do not compete for cores; the command line
    takes one per CPU. Processes are spawned, so a script calling this with ``jobs > 1``
    needs the usual ``if __name__ == "__main__":`` guard. Each result is saved as soon as
    its claim is done.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise LabError(f"jobs must be an integer >= 1, got {jobs!r}")
    claims = _select(only)
    seeds = seeds if seeds is not None else (1 if quick else 3)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
        raise LabError(f"seeds must be an integer from 1 to {MAX_SEEDS}, got {seeds!r}")
    try:
        folder = own_folder(out, "reproduce", older=("claims",))
        (folder / "claims").mkdir(parents=True, exist_ok=True)
        (folder / ".write-test").write_text("ok")
        (folder / ".write-test").unlink()
    except ValueError as exc:
        raise LabError(str(exc)) from None
    except OSError as exc:
        raise LabError(f"cannot write to output folder {str(out)!r}: {exc.strerror}") from None
    ctx = Context(folder, quick, seeds)
    config = {"quick": quick, "seeds": seeds}
    results: dict[str, dict[str, Any]] = {}
    todo: dict[str, str] = {}  # claim key -> fingerprint, for the claims to measure
    for claim in claims:
        path = folder / "claims" / f"{claim.key}.json"
        fp = fingerprint(claim, config)
        saved = _load(path, claim, fp, progress)
        if saved is not None:
            results[claim.key] = saved
            progress(f"{claim.key}: reused")
        else:
            todo[claim.key] = fp
    jobs = min(jobs, len(todo))

    def done(result: dict[str, Any]) -> None:
        path = folder / "claims" / f"{result['key']}.json"
        write_json(path, result)
        results[result["key"]] = json.loads(path.read_text())
        progress(f"{result['key']}: {result['verdict']} ({result['seconds']:.1f} s)")

    if jobs <= 1:
        for key, fp in todo.items():
            progress(f"{key}: measuring")
            done(_measure(key, fp, ctx, config))
    elif todo:
        _measure_in_processes(todo, ctx, config, jobs, progress, done)
    ordered = {c.key: results[c.key] for c in claims}
    write_report(folder, claims, ordered, config)
    return ordered


def _measure_in_processes(
    todo: dict[str, str],
    ctx: Context,
    config: dict[str, Any],
    jobs: int,
    progress: Callable[[str], None],
    done: Callable[[dict[str, Any]], None],
) -> None:
    """Measure the claims in ``todo`` in ``jobs`` fresh processes, the costliest first;
    ``done`` each result as it comes. A claim's error cancels the claims not started, saves
    those still running as they finish, then is raised; an interruption stops them all.
    Every result already done is kept."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    order = sorted(todo, key=lambda k: -_COST.get(k, 1.0))
    progress(f"measuring {len(order)} claims in {jobs} processes, the longest first")
    for key in order:
        progress(f"{key}: measuring")
    # spawned, not forked: a forked child of a process whose torch started its threads can
    # hang in its first parallel region
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context) as pool:
        pending = {pool.submit(_measure, key, todo[key], ctx, config) for key in order}
        error: BaseException | None = None
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    if future.cancelled():
                        continue
                    failure = future.exception()
                    if failure is None:
                        done(future.result())
                    elif error is None:
                        error = failure
                        for other in pending:
                            other.cancel()
        except BaseException:
            for future in pending:
                future.cancel()
            raise
        if error is not None:
            raise error


ADD_SEEDS = 3
"""Seeds added at a time while a statement's effect is not resolved (full runs only, up to
the claim's ``max_seeds``)."""


def _measure(key: str, fp: str, ctx: Context, config: dict[str, Any]) -> dict[str, Any]:
    """Measure one claim and judge it: the result to save. In a full run, a claim with a
    statement not resolved at its seeds is measured again with ``ADD_SEEDS`` more, up to
    its ``max_seeds``; the seeds used and what the additions cost are recorded."""
    claim = BY_KEY[key]
    load_before = os.getloadavg()[0]
    start, cpu = time.perf_counter(), time.process_time()
    seeds = ctx.seeds
    cap = ctx.seeds if ctx.quick else max(ctx.seeds, claim.max_seeds)
    torch.manual_seed(0)
    with one_thread():
        m = claim.measure(ctx)
    judgements = claim.judge(m.figures, m.flags, m.samples)
    first = time.perf_counter() - start
    while seeds < cap and any(j.verdict == NOT_RESOLVED for j in judgements):
        seeds = min(cap, seeds + ADD_SEEDS)
        torch.manual_seed(0)
        with one_thread():
            m = claim.measure(dataclasses.replace(ctx, seeds=seeds))
        judgements = claim.judge(m.figures, m.flags, m.samples)
    return {
        "key": claim.key,
        "fingerprint": fp,
        "config": config,
        "seeds": seeds,
        "figures": m.figures,
        "flags": m.flags,
        "samples": {k: [_json_number(v) for v in vs] for k, vs in m.samples.items()},
        "statements": [
            {
                "key": st.key,
                "verdict": j.verdict,
                "label": j.label,
                "detail": j.detail,
                "met": j.met,
                **_effect(st, j),
                **_condition(st, m.figures),
            }
            for st, j in zip(claim.statements, judgements, strict=True)
        ],
        "verdict": summary(judgements),
        "plots": [(c, Path(p).relative_to(ctx.folder).as_posix()) for c, p in m.plots],
        "table": m.table,
        "remarks": m.remarks,
        "seconds": time.perf_counter() - start,
        "seconds with the first seeds": first,
        "cpu seconds": time.process_time() - cpu,
        "load average": [load_before, os.getloadavg()[0]],
    }


def _effect(statement: Any, judgement: Any) -> dict[str, Any]:
    """The measured effect of a statement that claims one, as saved: ``estimate``, ``low``,
    ``high``, ``level``, ``smallest`` (positive favours the claim), ``seeds``, ``method``,
    and what it measures."""
    if judgement.effect is None:
        return {}
    spec = statement.effect
    effect = {k: _json_number(v) for k, v in judgement.effect.as_dict().items()}
    return {"effect": {**effect, "measures": spec.text, "unit": spec.unit}}


def _json_number(value: Any) -> Any:
    """A number as saved: infinities and nan as the strings ``float()`` reads back (an
    unbounded interval, a run that never reached its target), not JSON's null."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _condition(statement: Any, figures: dict[str, float]) -> dict[str, list[bool]]:
    cond = statement.condition
    if cond is None:
        return {}
    return {
        "inside": [c.met(figures) for c in cond.inside],
        "outside": [c.met(figures) for c in cond.outside],
    }
