"""Vectorized execution: K runs of one optimizer on one workload, trained as one problem.

An lr x seed grid trains the same small model K times, and on a CPU a large part of a small
run's training time goes to per-call overhead (Python, dispatch), not to arithmetic.
:func:`run_batched` stacks the K configurations' parameters along a leading dimension,
computes every configuration's loss and gradient in one batched forward and backward pass,
and steps all of them with the very rule objects the drop-in optimizer runs (one per param
group: with weight decay, run_one's biases sit in an undecayed group), through the reference
engine's :func:`~descentlab.engines.reference.apply_reference`; per-configuration
coefficients (``lr``, bias corrections...) are passed as ``[K, 1, ...]`` arrays that
broadcast against the stacked parameters. No update math is written here. What batching
cannot remove is per-configuration arithmetic: the evaluations on the full data sets (each
configuration's own, see below) and the element-wise work of the update.

Per configuration, so that each run equals :func:`~descentlab.lab.runner.run_one` to float64
round-off: its initial weights (its own ``build(seed, options)``), its mini-batch order (its
own generator seeded ``10_000 + seed``), its gradient noise, its step count, its evaluations
(its own Problem's code, run on its slice of the weights) and its divergence. The K losses
are summed, never averaged, before the backward pass, so each slice's gradient is its own
loss's. A configuration whose loss blows up is recorded as run_one records it and then
leaves the batch (its rows are dropped from the parameters and the optimizer state), so a
NaN in one slice can reach no other and is never multiplied by a mask.

Timing: the CPU (and wall) seconds of each batched step are shared equally by the
configurations that took that step, so a record's ``time`` and ``seconds`` are its share of
the batched cost (the batch's elapsed CPU time divided by K), not what it would take alone.

How a workload is batched: ``workloads.py`` keeps each Problem's model, data and noise
generator inside closures and exposes no other handle, so :func:`_parts` reads them from
there, for the three problem makers it recognises by name: the 2-D landscapes (ravine,
rosenbrock, saddle, beale, with or without gradient noise), the noisy quadratic, and models
on in-memory tensors without buffers (linreg, digits-logreg, digits-mlp, mnist1d-cnn; their
forward pass is ``torch.func.vmap`` over ``functional_call``). That is every workload of the
registry. Only builds taken from the registry are batched (:func:`can_batch`): a user's
model, or a registry build wrapped in another function, runs one by one.
"""

from __future__ import annotations

import copy
import inspect
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.func import functional_call, vmap

from ..engines.reference import LOW_PRECISION, apply_reference
from ..rules.base import Rule
from .runner import (
    _CLASSES,
    DIVERGED_FACTOR,
    Record,
    RunSpec,
    _batches,
    machine_load,
    param_groups,
)
from .workloads import WORKLOADS, Problem

__all__ = ["can_batch", "run_batched"]

Tensor = torch.Tensor
Build = Callable[[int, dict[str, Any]], Problem]


# ---------------------------------------------------------------- batched objectives


class _Objective(ABC):
    """The training losses of several configurations, computed together."""

    @abstractmethod
    def losses(self, params: list[Tensor], rows: list[int], indices: Tensor | None) -> Tensor:
        """Losses ``[A]`` of ``A`` stacked parameter sets (each of ``params`` is ``[A, ...]``).

        ``rows`` are the configurations' positions in the batch as it started (to find what
        each keeps of its own, a noise generator); ``indices`` ``[A, B]`` holds each
        configuration's mini-batch, or is None for the full training set.
        """


@dataclass
class _Landscape(_Objective):
    """A 2-D function ``f(x, y)`` evaluated at every configuration's point at once."""

    f: Callable[[Tensor, Tensor], Tensor]
    noise: float
    gens: list[torch.Generator]  # each configuration's own gradient-noise stream

    def losses(self, params: list[Tensor], rows: list[int], indices: Tensor | None) -> Tensor:
        (w,) = params
        value = self.f(w[:, 0], w[:, 1])
        if self.noise and torch.is_grad_enabled():
            # as workloads._landscape: adds noise * xi to the gradient, leaves the value alone
            draws = [torch.randn(2, generator=self.gens[r], dtype=torch.float64) for r in rows]
            dot = (torch.stack(draws) * w).sum(-1)
            value = value + self.noise * (dot - dot.detach())
        return value


@dataclass
class _Quadratic(_Objective):
    """The noisy quadratic: ``0.5 (w - c)^T H (w - c)`` averaged over the batch's centers."""

    h: Tensor
    centers: Tensor

    def losses(self, params: list[Tensor], rows: list[int], indices: Tensor | None) -> Tensor:
        (w,) = params
        c = self.centers if indices is None else self.centers[indices]  # [n, D] or [A, B, D]
        d = w.unsqueeze(1) - c
        return 0.5 * ((d @ self.h) * d).sum(-1).mean(-1)


@dataclass
class _Supervised(_Objective):
    """A model on in-memory tensors: one ``functional_call`` per configuration, vmapped."""

    model: torch.nn.Module  # a private copy: only its structure is used
    names: list[str]
    x: Tensor
    y: Tensor
    loss_fn: Callable[[Tensor, Tensor], Tensor]

    def losses(self, params: list[Tensor], rows: list[int], indices: Tensor | None) -> Tensor:
        if indices is None:  # the full training set, shared by every configuration
            return vmap(self._one, in_dims=(0, None, None))(tuple(params), self.x, self.y)
        return vmap(self._one)(tuple(params), self.x[indices], self.y[indices])

    def _one(self, params: tuple[Tensor, ...], x: Tensor, y: Tensor) -> Tensor:
        out = functional_call(self.model, dict(zip(self.names, params, strict=True)), (x,))
        return self.loss_fn(out, y).reshape(())


# ---------------------------------------------------------------- recognising a workload


def _parts(problems: list[Problem], names: tuple[str, ...]) -> list[Mapping[str, Any]] | None:
    """The variables ``names`` each problem's loss closes over, or None if one lacks any.

    The registry's problem makers keep their model and data in closures (see the module
    docstring); reading them gives the very tensors and generators run_one would use.
    """
    found = []
    for problem in problems:
        if not inspect.isfunction(problem.loss):
            return None
        variables = inspect.getclosurevars(problem.loss).nonlocals
        if not all(name in variables for name in names):
            return None
        found.append(variables)
    return found


def _same(parts: list[Mapping[str, Any]], *names: str) -> bool:
    """Whether every configuration holds equal tensors under ``names`` (the shared data)."""
    first = parts[0]
    return all(torch.equal(p[n], first[n]) for p in parts[1:] for n in names)


def _trains_w(parts: list[Mapping[str, Any]], problems: list[Problem]) -> bool:
    """Whether each problem's one parameter is the ``w`` its loss reads."""
    pairs = zip(parts, problems, strict=True)
    return all(len(q.params) == 1 and q.params[0] is p["w"] for p, q in pairs)


def _landscape(problems: list[Problem]) -> _Objective | None:
    parts = _parts(problems, ("f", "w", "noise", "gen"))
    if parts is None or not _trains_w(parts, problems):
        return None
    if any(p["noise"] != parts[0]["noise"] for p in parts):
        return None
    return _Landscape(parts[0]["f"], float(parts[0]["noise"]), [p["gen"] for p in parts])


def _quadratic(problems: list[Problem]) -> _Objective | None:
    parts = _parts(problems, ("h", "centers", "w"))
    if parts is None or not _trains_w(parts, problems):
        return None
    if not _same(parts, "h", "centers"):
        return None
    return _Quadratic(parts[0]["h"], parts[0]["centers"])


def _supervised(problems: list[Problem]) -> _Objective | None:
    parts = _parts(problems, ("model", "x", "y", "loss_fn"))
    if parts is None or not _same(parts, "x", "y"):
        return None
    model = parts[0]["model"]
    if not isinstance(model, torch.nn.Module) or any(True for _ in model.buffers()):
        return None  # buffers (batch-norm statistics...) change in the forward pass
    for p, problem in zip(parts, problems, strict=True):
        if p["loss_fn"] is not parts[0]["loss_fn"] or not _trains_all(p["model"], problem):
            return None
    names = [name for name, _ in model.named_parameters()]
    first = parts[0]
    return _Supervised(copy.deepcopy(model), names, first["x"], first["y"], first["loss_fn"])


def _trains_all(model: torch.nn.Module, problem: Problem) -> bool:
    """Whether ``problem`` trains every weight of ``model``, in its order (none frozen)."""
    weights = list(model.parameters())
    return len(weights) == len(problem.params) and all(
        w is p for w, p in zip(weights, problem.params, strict=True)
    )


# The functions that build the registry's problems, by the qualified name of their loss.
_MAKERS: dict[str, Callable[[list[Problem]], _Objective | None]] = {
    "_landscape.<locals>.build.<locals>.loss": _landscape,
    "_noisy_quadratic.<locals>.loss": _quadratic,
    "supervised_problem.<locals>.loss": _supervised,
}


def _objective(problems: list[Problem]) -> _Objective | None:
    """The batched form of these problems (one per configuration), or None if unknown."""
    kinds = {getattr(p.loss, "__qualname__", "") for p in problems}
    maker = _MAKERS.get(kinds.pop()) if len(kinds) == 1 else None
    if maker is None or len({p.n_train for p in problems}) != 1:
        return None
    return maker(problems)


def can_batch(workload_name: str, build: Build) -> bool:
    """Whether runs of ``workload_name`` built by ``build`` can go through :func:`run_batched`.

    Only the registry's own build is trusted: a user's model may keep state or draw random
    numbers in its forward pass, which one batched pass would not reproduce. False means:
    run them one by one with ``run_one``.
    """
    workload = WORKLOADS.get(workload_name)
    if workload is None or build is not workload.build:
        return False
    return _objective([build(0, dict(workload.options))]) is not None


# ---------------------------------------------------------------- the optimizer


@dataclass(frozen=True)
class _Optimizer:
    """One configuration's optimizer as run_one builds it: per param group, the rule and the
    hyperparameters its drop-in steps with, and the group of each parameter."""

    groups: list[tuple[Rule, dict[str, float]]]
    group_of: list[int]  # per parameter, in the problem's order
    lr: float  # what run_one records: the first group's

    def structure(self) -> tuple[list[Rule], list[int]]:
        """What must be shared to step configurations together: rules and grouping."""
        return [rule for rule, _ in self.groups], self.group_of


def _optimizer(spec: RunSpec, problem: Problem) -> _Optimizer:
    """Read the rules and hyperparameters off the drop-in optimizer run_one builds.

    Same groups (``runner.param_groups``: with weight decay, biases get none), and per group
    what ``Optimizer.step`` reads from it (``info.rule(group)``, ``info.scalars(group)``):
    the same defaults, the same validation errors and the same rule objects.
    """
    cls = _CLASSES[spec.optimizer.name]
    groups = param_groups(problem.params, spec.optimizer)
    opt = cls(groups, lr=spec.lr, **spec.optimizer.kwargs(), engine="reference")
    where = {id(p): g for g, group in enumerate(opt.param_groups) for p in group["params"]}
    if any(id(p) not in where for p in problem.params):
        raise ValueError("run_batched steps every parameter; a frozen one is not supported")
    return _Optimizer(
        [(cls.info.rule(group), cls.info.scalars(group)) for group in opt.param_groups],
        [where[id(p)] for p in problem.params],
        float(opt.param_groups[0]["lr"]),
    )


def _coefficients(rule: Rule, hps: list[dict[str, float]], steps: list[int]) -> dict[str, Tensor]:
    """Each coefficient of the rule as a ``[A]`` array, one entry per configuration.

    Computed on the host in double precision per configuration, exactly as the reference
    engine computes its Python floats; a cast to the parameters' dtype then rounds them as
    a Python scalar is rounded inside a tensor operation.
    """
    per = [rule.coefficients(hp, step) for hp, step in zip(hps, steps, strict=True)]
    return {k: torch.tensor([c[k] for c in per], dtype=torch.float64) for k in per[0]}


def _step_param(rule: Rule, p: Tensor, slots: dict[str, Tensor], c: dict[str, Tensor]) -> None:
    """One step of one stacked parameter, in place, by the reference engine's own code."""
    if p.grad is None:
        raise RuntimeError("a batched parameter got no gradient (unused by the loss)")
    dtype = torch.float32 if p.dtype in LOW_PRECISION else p.dtype
    shape = (-1,) + (1,) * (p.dim() - 1)  # [A, 1, ...]: broadcasts along the slice
    with torch.no_grad():
        apply_reference(rule, p, p.grad, slots, {k: v.to(dtype).view(shape) for k, v in c.items()})


# ---------------------------------------------------------------- one configuration


def _norms(tensors: list[Tensor]) -> list[float]:
    """Each slice's Euclidean norm over all tensors, summed in float64.

    run_one's telemetry gets the same norms per param group and combines them (``hypot``);
    the sums differ in order only (for float32 weights it sums in float32: ~1e-7 apart).
    """
    squares = [t.detach().double().pow(2).reshape(len(t), -1).sum(1) for t in tensors]
    return torch.stack(squares).sum(0).sqrt().tolist()


def _load(problem: Problem, params: list[Tensor], i: int) -> None:
    """Copy slice ``i`` of the stacked weights into ``problem``, to run its own code on them."""
    with torch.no_grad():
        for p, stacked in zip(problem.params, params, strict=True):
            p.copy_(stacked[i])


@dataclass
class _Config:
    """What stays one configuration's own inside the batch, and its record."""

    spec: RunSpec
    problem: Problem  # built with its own seed: its start, and the code of its evaluation
    opt: _Optimizer
    batches: Iterator[Tensor] | None
    record: Record
    # Steps taken. The drop-ins start a fresh parameter's count at 0 and add 1 before each
    # update (Optimizer._prepare_state, _reference_step), so the first update is step 1: the
    # one HeavyBall starts its buffer at and Adam's bias corrections count from. (SGD without
    # momentum keeps no state, and its private counter starts at 1, but no coefficient of
    # that rule reads the step.)
    count: int = 0
    start_loss: float = 0.0
    cpu: float = 0.0
    wall: float = 0.0

    def evaluate(self, step: int) -> None:
        """run_one's evaluation, on this configuration's problem (its weights loaded)."""
        row = {"step": step, "train_loss": self.problem.full_loss()}
        if self.problem.evaluate is not None:
            row.update(self.problem.evaluate())
        self.record.evals.append(row)

    def begin(self) -> None:
        self.evaluate(0)
        if self.problem.point is not None:
            self.record.points.append(self.problem.point())
        self.start_loss = abs(self.record.evals[0]["train_loss"])

    def after_step(
        self, value: float, norms: tuple[float, float, float], params: list[Tensor], i: int
    ) -> bool:
        """Record a step as run_one does; True when the run is over (diverged or done).

        ``norms`` are the step's gradient, update and (previous) weight norms. This
        configuration's weights (slice ``i`` of ``params``) are copied into its problem only
        when its own code must run on them: for a trajectory point or an evaluation.
        """
        rec = self.record
        rec.loss.append(value)
        rec.lr.append(self.opt.lr)
        rec.grad_norm.append(norms[0])
        rec.update_norm.append(norms[1])
        rec.param_norm.append(norms[2])
        rec.time.append(self.cpu)
        step = len(rec.loss)
        evaluate = step % self.spec.eval_every == 0 or step == self.spec.steps
        if self.problem.point is not None or evaluate:
            _load(self.problem, params, i)
        if self.problem.point is not None:
            rec.points.append(self.problem.point())
        if not math.isfinite(value) or abs(value) > DIVERGED_FACTOR * max(self.start_loss, 1.0):
            rec.diverged = True
            return True
        if evaluate:
            self.evaluate(step)
        return step == self.spec.steps

    def finish(self) -> Record:
        rec = self.record
        if rec.diverged:
            rec.evals.append({"step": len(rec.loss), "train_loss": float("nan")})
        rec.seconds, rec.wall_seconds = self.cpu, self.wall
        rec.load_end = machine_load()[0]
        return rec


def _config(spec: RunSpec, problem: Problem, load: list[float], cpus: int) -> _Config:
    gen = torch.Generator().manual_seed(10_000 + spec.seed)  # run_one's mini-batch order
    batch = spec.regime.batch_size(problem.n_train)
    batches = iter(_batches(problem.n_train, batch, gen)) if batch and problem.n_train else None
    record = Record(spec=spec.describe(), id=spec.id, load=load, cpus=cpus)
    return _Config(spec, problem, _optimizer(spec, problem), batches, record)


# ---------------------------------------------------------------- the batch


@dataclass
class _Batch:
    """The configurations still training: their stacked weights and optimizer state."""

    objective: _Objective
    configs: list[_Config]
    params: list[Tensor]
    state: list[dict[str, Tensor]] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # positions in ``configs`` still training

    def active(self) -> list[_Config]:
        return [self.configs[r] for r in self.rows]

    def step(self) -> tuple[list[float], list[tuple[float, float, float]]]:
        """One step of every active configuration: their losses, and per configuration the
        norms run_one records (gradient, update, weights before the step)."""
        before = [p.detach().clone() for p in self.params]
        active = self.active()
        t0, w0 = time.process_time(), time.perf_counter()  # timed: what the step costs
        for p in self.params:
            p.grad = None
        losses = self.objective.losses(self.params, self.rows, _next_batches(active))
        losses.sum().backward()  # a sum, not a mean: each slice's gradient is its own loss's
        self._update(active)
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
        for c in active:  # the step's cost, shared by the configurations that took it
            c.cpu += cpu / len(active)
            c.wall += wall / len(active)
        grads = [p.grad for p in self.params if p.grad is not None]  # the step read these
        updates = [p.detach() - b for p, b in zip(self.params, before, strict=True)]
        norms = list(zip(_norms(grads), _norms(updates), _norms(before), strict=True))
        return losses.detach().tolist(), norms

    def _update(self, active: list[_Config]) -> None:
        """Step every parameter with its group's rule and per-configuration coefficients."""
        for c in active:
            c.count += 1
        steps = [c.count for c in active]
        first = active[0].opt
        coefficients = [
            _coefficients(rule, [c.opt.groups[g][1] for c in active], steps)
            for g, (rule, _) in enumerate(first.groups)
        ]
        for i, (p, slots) in enumerate(zip(self.params, self.state, strict=True)):
            g = first.group_of[i]
            _step_param(first.groups[g][0], p, slots, coefficients[g])

    def keep(self, kept: list[int]) -> None:
        """Keep only slices ``kept``: a finished or diverged run leaves the batch whole."""
        index = torch.tensor(kept, dtype=torch.long)
        self.params = [p.detach()[index].requires_grad_() for p in self.params]
        self.state = [{k: v[index] for k, v in slots.items()} for slots in self.state]
        self.rows = [self.rows[i] for i in kept]


def _next_batches(configs: list[_Config]) -> Tensor | None:
    """Each configuration's next mini-batch, ``[A, B]`` (None: the full set, or no data)."""
    batches = [next(c.batches) for c in configs if c.batches is not None]
    return torch.stack(batches) if batches else None


def _check_one_problem(specs: list[RunSpec]) -> None:
    """Batched runs share a workload, its options, one optimizer spec and one regime."""
    first = specs[0]
    key = (first.workload, first.optimizer, first.regime, first.options, first.fingerprint)
    for spec in specs:
        if (spec.workload, spec.optimizer, spec.regime, spec.options, spec.fingerprint) != key:
            raise ValueError(
                "run_batched trains one optimizer spec on one workload and regime; got "
                f"{first.workload}/{first.optimizer.label}/{first.regime.label} and "
                f"{spec.workload}/{spec.optimizer.label}/{spec.regime.label}"
            )


def run_batched(specs: list[RunSpec], build: Build) -> list[Record]:
    """Train ``specs`` as one batched problem; the records of ``[run_one(s, build) ...]``.

    The specs may differ in ``lr``, ``seed``, ``steps`` and ``eval_every``; everything else
    is shared. Every record field equals run_one's to round-off except the timings: ``time``
    and ``seconds`` are this run's share (1/K) of the batch's CPU seconds per step, and
    ``wall_seconds`` likewise. Check :func:`can_batch` first; a build whose problems are not
    recognised raises ``ValueError``.

    Example (lr 3 diverges on the ravine and stops; the other two run their 20 steps):
        >>> from descentlab.lab.spec import Regime, parse_optimizer
        >>> specs = [RunSpec("ravine", parse_optimizer("sgd"), lr, 0, Regime("full"), 20, 5)
        ...          for lr in (0.01, 3.0, 0.03)]
        >>> [(len(r.loss), r.diverged) for r in run_batched(specs, WORKLOADS["ravine"].build)]
        [(20, False), (3, True), (20, False)]
    """
    if not specs:
        return []
    _check_one_problem(specs)
    problems = [build(spec.seed, dict(spec.options)) for spec in specs]
    objective = _objective(problems)
    if objective is None:
        raise ValueError(f"workload {specs[0].workload!r} cannot be batched; use run_one")
    load, cpus = machine_load()
    configs = [_config(s, p, load, cpus) for s, p in zip(specs, problems, strict=True)]
    for c in configs:
        c.begin()
    batch = _batch(objective, configs)
    while batch.rows:
        losses, norms = batch.step()
        kept = []
        for i, c in enumerate(batch.active()):
            if not c.after_step(losses[i], norms[i], batch.params, i):
                kept.append(i)
        if len(kept) < len(batch.rows):
            batch.keep(kept)
    return [c.finish() for c in configs]


def _batch(objective: _Objective, configs: list[_Config]) -> _Batch:
    """Every configuration's weights stacked along a new first dimension, fresh state."""
    first = configs[0].opt
    if any(c.opt.structure() != first.structure() for c in configs):
        raise ValueError("run_batched needs one rule per parameter across configurations")
    stacked = zip(*(c.problem.params for c in configs), strict=True)
    params = [torch.stack([p.detach() for p in ps]).requires_grad_() for ps in stacked]
    rules = [first.groups[g][0] for g in first.group_of]
    state = [rule.init(p.detach()) for rule, p in zip(rules, params, strict=True)]
    batch = _Batch(objective, configs, params, state, list(range(len(configs))))
    batch.keep([i for i, c in enumerate(configs) if c.spec.steps > 0])
    return batch
