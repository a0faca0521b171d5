"""Vectorized execution: K runs of one optimizer on one workload, trained as one problem.

An lr x seed grid trains the same small model K times, and on a CPU a large part of a small
run's training time goes to per-call overhead (Python, dispatch), not to arithmetic.
:func:`run_batched` stacks the K configurations' parameters along a leading dimension (one
``[K, N]`` buffer per param group, each parameter a view into it), computes every
configuration's loss and gradient in one batched forward and backward pass, evaluates them
in batched passes too, and steps all of them with the very rule objects the drop-in
optimizer runs (one per param group: with weight decay, run_one's biases sit in an
undecayed group), through the reference engine's own :func:`~descentlab.engines.reference.
compute` and :func:`~descentlab.engines.reference.write_back`; per-configuration
coefficients (``lr``...) are passed as ``[K, 1]`` arrays that broadcast against the stacked
parameters, and a coefficient every configuration shares as the Python float run_one
passes. No update math is written here.

Per configuration, so that each run equals :func:`~descentlab.lab.runner.run_one` to float64
round-off: its initial weights (its own ``build(seed, options)``), its mini-batch order (its
own generator, :func:`~descentlab.lab.training.batch_order`), its gradient noise, its step
count, its evaluations and its divergence, decided and recorded by the training core
(:mod:`descentlab.lab.training`) as run_one's are. The K losses are summed, never
averaged, before the backward pass, so each slice's gradient is its own loss's. A
configuration whose loss blows up is recorded as run_one records it and then leaves the
batch (its rows are dropped from the parameters and the optimizer state), so a NaN in one
slice can reach no other and is never multiplied by a mask. The norms run_one's telemetry
records (gradient, update, weights) are computed from the same per-parameter sums of
squares and combined by the same formula; on the 2-D landscapes, whose arithmetic is
element-wise, every field equals run_one's bit for bit.

A configuration's numbers do not depend on which other configurations share its batch: each
slice's arithmetic is its own (batched matrix products, one per slice; per-row reductions;
a lone configuration computed beside a spare copy of itself, see ``stacked.Objective.pairs``), so
a run trained in a batch of 2 equals, bit for bit, the same run trained in a batch of 30
(the sweep relies on it: a resumed sweep trains what is left in smaller batches). That
rests on torch computing each slice of a batched product the same way whatever the
batch's size, as its CPU kernels do (checked for every workload by the tests, on the
machine they run on). The numbers differ from run_one's only by the round-off of batched
matrix products.

Timing: the CPU (and wall) seconds of each batched step are shared equally by the
configurations that took that step, so a record's ``time`` and ``seconds`` are its share of
the batched cost (the batch's elapsed CPU time divided by K), not what it would take alone;
``Record.batch`` says how many runs were trained together. As in run_one, evaluations are
not timed.

How a workload is batched: :class:`~descentlab.lab.workloads.Problem` names what it is made
of in ``problem.parts``, for the three problem makers of ``workloads.py``: the 2-D landscapes
(ravine, rosenbrock, saddle, beale, with or without gradient noise), the noisy quadratic,
and models on in-memory tensors without buffers (linreg, digits-logreg and digits-mlp run as
batched matrix products, mnist1d-cnn as ``torch.func.vmap`` over ``functional_call``). That
is every workload of the registry. Only builds taken from the registry are batched
(:func:`can_batch`): a user's model, or a registry build wrapped in another function, runs
one by one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ..diagnostics.hooks import total as _total
from ..engines.policy import compute_dtype
from ..engines.reference import apply_reference, compute, write_back
from ..rules.base import Rule, advance
from . import training
from .stacked import Objective, objective_for
from .training import OPTIMIZERS, Record, Recorder, RunSpec, batch_order, param_groups
from .workloads import WORKLOADS, Problem

__all__ = ["can_batch", "run_batched"]

Tensor = torch.Tensor
Build = Callable[[int, dict[str, Any]], Problem]
UPDATE_ELEMENTS = 1 << 16  # numbers per thread in a piece of a batched update (see _step_param)


def rule_batches(optimizer: str) -> bool:
    """Whether an optimizer's rule can step configurations stacked as rows: an element-wise
    rule without per-parameter scalars. Adafactor and Muon reduce over a whole tensor (a row
    would mix its matrix up), NAdam and ASGD keep scalars per parameter: run one by one."""
    info = OPTIMIZERS[optimizer].info
    return info.rule(info.defaults).runs_flat


def can_batch(workload_name: str, build: Build) -> bool:
    """Whether runs of ``workload_name`` built by ``build`` can go through :func:`run_batched`.

    Only the registry's own build is trusted: a user's model may keep state or draw random
    numbers in its forward pass, which one batched pass would not reproduce. False means:
    run them one by one with ``run_one``.
    """
    workload = WORKLOADS.get(workload_name)
    if workload is None or build is not workload.build:
        return False
    return objective_for([build(0, dict(workload.options))]) is not None


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

    Same groups (``training.param_groups``: with weight decay, biases get none), and per group
    what ``Optimizer.step`` reads from it (``info.rule(group)``, ``info.scalars(group)``):
    the same defaults, the same validation errors and the same rule objects.
    """
    cls = OPTIMIZERS[spec.optimizer.name]
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


def _coefficients(rule: Rule, hps: list[dict[str, float]], steps: list[int]) -> dict[str, Any]:
    """Each coefficient of the rule for ``A`` configurations: a Python float where they all
    share it, else a ``[A]`` float64 array, one entry per configuration.

    Computed on the host in double precision per distinct (hyperparameters, step), exactly
    as the reference engine computes its Python floats; a cast to the parameters' dtype
    then rounds an array as a Python scalar is rounded inside a tensor operation.
    """
    seen: dict[tuple[Any, ...], dict[str, float]] = {}
    per = []
    for hp, step in zip(hps, steps, strict=True):
        key = (step, *hp.items())
        if key not in seen:
            seen[key] = rule.coefficients(hp, step)
        per.append(seen[key])
    if len(seen) == 1:
        return dict(per[0])
    out: dict[str, Any] = {}
    for k, value in per[0].items():
        values = [c[k] for c in per]
        # equal non-zero floats are identical; zeros (their sign) and NaN are looked at closely
        same = value != 0 and values.count(value) == len(values)
        if same or all(_identical(v, value) for v in values):
            out[k] = value
        else:
            out[k] = torch.tensor(values, dtype=torch.float64)
    return out


def _identical(a: float, b: float) -> bool:
    """Equal, zeros of the same sign (``0.0 * x`` and ``-0.0 * x`` differ), NaN to NaN."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def _step_param(
    rule: Rule,
    p: Tensor,
    slots: dict[str, Tensor],
    c: Mapping[str, Any],
    sizes: list[int] | None = None,
) -> Tensor | None:
    """One step of one stacked parameter ``[A, ...]``, in place, by the reference engine's
    own code (``c`` from :func:`_coefficients`).

    With ``sizes`` (``p`` is a flat ``[A, N]`` buffer of parameters of these sizes), the
    rows are stepped a few at a time (about ``UPDATE_ELEMENTS`` numbers per thread: the
    rule's temporaries then stay in the CPU's caches; each element's arithmetic is the same),
    and what the engine's ``update_stats`` gives telemetry is returned, per configuration
    and parameter: ``[3, A, len(sizes)]`` sums of squares of the update, of the weights
    before it and of the gradient.
    """
    if p.grad is None:
        raise RuntimeError("a batched parameter got no gradient (unused by the loss)")
    dtype = compute_dtype(p.dtype)  # the precision of the rule's arithmetic
    shape = (-1,) + (1,) * (p.dim() - 1)  # [A, 1, ...]: broadcasts along the slice
    cs = {k: v.to(dtype).view(shape) if isinstance(v, Tensor) else v for k, v in c.items()}
    with torch.no_grad():
        if sizes is None:
            apply_reference(rule, p, p.grad, slots, cs)
            return None
        weights, grads = p.detach(), p.grad
        rows = max(1, UPDATE_ELEMENTS * torch.get_num_threads() // max(1, weights.shape[1]))
        stats = []
        for start in range(0, len(weights), rows):
            part = slice(start, start + rows)
            w, g = weights[part], grads[part]
            state = {k: v[part] for k, v in slots.items()}
            coefficients = {k: v[part] if isinstance(v, Tensor) else v for k, v in cs.items()}
            new_w, new_state = compute(rule, w, g, state, coefficients)
            stats.append(_row_stats(w, new_w, g, sizes))
            write_back(w, state, new_w, new_state)
    return stats[0] if len(stats) == 1 else torch.cat(stats, 1)


def _row_stats(p: Tensor, new_p: Tensor, g: Tensor, sizes: list[int]) -> Tensor:
    """``engines.reference.update_stats`` of each configuration and parameter of a group:
    ``[3, A, len(sizes)]`` (the update's, the weights', the gradient's). The three squares
    are taken in one pass over one stacked array; each sum adds what update_stats adds."""
    acc = compute_dtype(p.dtype)  # update_stats' precision: float64 for float64, else float32
    p, new_p, g = p.to(acc), new_p.to(acc), g.to(acc)
    square = torch.stack((new_p - p, p, g)).square_()  # [3, A, N]
    if len(sizes) == 1:
        return square.sum(2, keepdim=True)
    return torch.stack([q.sum(2) for q in square.split(sizes, 2)], 2)


def _telemetry_norms(stats: list[Tensor], count: int) -> list[tuple[float, float, float]]:
    """Each configuration's gradient, update and weight norms, from each group's
    ``[3, A, m]`` sums of squares (:func:`_step_param`), combined on the host as run_one's
    telemetry combines them: per group ``sqrt(sum(sqrt(s) ** 2))``, then ``hypot`` across
    groups (the first ``count`` rows; a spare copy of a lone configuration is left out).
    On the host, not in torch: ``math.sqrt`` and torch's vectorized square root can differ
    in the last bit."""
    tables = [s.double().tolist() for s in stats]  # per group: [quantity][row][parameter]
    if len(tables) == 1:  # the hypot of one norm is the norm
        update, weight, grad = tables[0]
        return [(_group(grad[i]), _group(update[i]), _group(weight[i])) for i in range(count)]
    return [
        (
            math.hypot(*(_group(t[2][i]) for t in tables)),
            math.hypot(*(_group(t[0][i]) for t in tables)),
            math.hypot(*(_group(t[1][i]) for t in tables)),
        )
        for i in range(count)
    ]


def _group(sums: list[float]) -> float:
    """A group's norm from its parameters' sums of squares, as telemetry totals it."""
    return _total(map(math.sqrt, sums))


# ---------------------------------------------------------------- one configuration


@dataclass
class _Config:
    """What stays one configuration's own inside the batch; its record is kept by the
    training core's :class:`~descentlab.lab.training.Recorder`, as run_one's is."""

    spec: RunSpec
    opt: _Optimizer
    batches: Iterator[Tensor] | None
    recorder: Recorder
    # Steps taken, advanced by the rules' one step counter (``rules.base.advance``): the
    # drop-ins start a fresh parameter's count at 0 and advance it before each update, so
    # the first update is step 1: the one HeavyBall starts its buffer at and Adam's bias
    # corrections count from. (SGD without momentum keeps no state, but no coefficient of
    # that rule reads the step.)
    count: int = 0
    cpu: float = 0.0
    wall: float = 0.0

    @property
    def record(self) -> Record:
        return self.recorder.record

    def after_step(
        self, value: float, norms: tuple[float, float, float], point: tuple[float, float] | None
    ) -> tuple[bool, bool]:
        """Record a step as run_one does; (evaluate now, the run is over)."""
        return self.recorder.step(value, self.opt.lr, norms, self.cpu, point)

    def finish(self) -> Record:
        return self.recorder.finish(self.cpu, self.wall)


def _config(spec: RunSpec, problem: Problem, load: list[float], cpus: int, k: int) -> _Config:
    batches = batch_order(spec.regime, problem.n_train, spec.seed)  # run_one's order
    recorder = Recorder(spec, load, cpus, batch=k)
    return _Config(spec, _optimizer(spec, problem), batches, recorder)


# ---------------------------------------------------------------- the batch


@dataclass
class _Group:
    """One param group of every configuration: a flat ``[A, N]`` buffer and its state."""

    rule: Rule
    members: list[int]  # the positions of its parameters in the problem's params
    shapes: list[torch.Size]
    flat: Tensor  # [A, N], a leaf: the parameters are views into it
    state: dict[str, Tensor]  # [A, N] each

    @property
    def sizes(self) -> list[int]:
        return [math.prod(shape) for shape in self.shapes]


@dataclass
class _Batch:
    """The configurations still training: their stacked weights and optimizer state."""

    objective: Objective
    configs: list[_Config]
    groups: list[_Group]
    count: int  # parameters per configuration
    rows: list[int] = field(default_factory=list)  # positions in ``configs`` still training
    spare: bool = False  # whether the buffers hold a spare copy of a lone configuration

    def active(self) -> list[_Config]:
        return [self.configs[r] for r in self.rows]

    def params(self, detach: bool = False) -> list[Tensor]:
        """Each parameter of the problem, ``[A, ...]``: a view into its group's buffer
        (``detach``: of its values, outside autograd)."""
        out: list[Tensor] = [torch.empty(0)] * self.count
        for g in self.groups:
            a, flat = len(g.flat), g.flat.detach() if detach else g.flat
            for i, piece, shape in zip(g.members, flat.split(g.sizes, 1), g.shapes, strict=True):
                out[i] = piece.view(a, *shape)
        return out

    def step(self) -> tuple[list[float], list[tuple[float, float, float]]]:
        """One step of every active configuration: their losses, and per configuration the
        norms run_one records (gradient, update, weights before the step)."""
        active = self.active()
        t0, w0 = time.process_time(), time.perf_counter()  # timed: what the step costs
        for g in self.groups:
            g.flat.grad = None
        indices = _next_batches(active)
        if self.spare and indices is not None:
            indices = indices.expand(2, -1)  # the spare copy takes the same mini-batch
        losses = self.objective.losses(self.params(), self.rows, indices)
        losses.sum().backward()  # a sum, not a mean: each slice's gradient is its own loss's
        norms = _telemetry_norms(self._update(active), len(active))
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
        for c in active:  # the step's cost, shared by the configurations that took it
            c.cpu += cpu / len(active)
            c.wall += wall / len(active)
        return losses.detach()[: len(active)].tolist(), norms

    def _update(self, active: list[_Config]) -> list[Tensor]:
        """Step every group with its rule and per-configuration coefficients; each group's
        per-parameter sums of squares (see :func:`_step_param`)."""
        for c in active:
            c.count = advance(c.count)
        steps = [c.count for c in active]
        stats = []
        for i, g in enumerate(self.groups):
            coefficients = _coefficients(g.rule, [a.opt.groups[i][1] for a in active], steps)
            stats.append(_step_param(g.rule, g.flat, g.state, coefficients, g.sizes))
        return [s for s in stats if s is not None]

    def keep(self, kept: list[int]) -> None:
        """Keep only slices ``kept``: a finished or diverged run leaves the batch whole.

        A configuration left alone keeps a spare copy of itself (see :class:`Objective`'s
        ``pairs``), stepped with it and never recorded (its time includes the spare's).
        """
        self.spare = len(kept) == 1 and self.objective.pairs
        index = torch.tensor(kept * 2 if self.spare else kept, dtype=torch.long)
        for g in self.groups:
            g.flat = g.flat.detach()[index].requires_grad_()
            g.state = {k: v[index] for k, v in g.state.items()}
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
    ``wall_seconds`` likewise; ``batch`` is K. Check :func:`can_batch` first; a build whose
    problems are not recognised raises ``ValueError``.

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
    objective = objective_for(problems)
    if objective is None:
        raise ValueError(f"workload {specs[0].workload!r} cannot be batched; use run_one")
    load, cpus = training.machine_load()  # looked up there: run_one's, even when replaced
    configs = [_config(s, p, load, cpus, len(specs)) for s, p in zip(specs, problems, strict=True)]
    batch = _batch(objective, configs, problems)
    params = batch.params(detach=True)
    points = objective.points(params)
    for i, (c, row) in enumerate(zip(configs, objective.evaluate(params), strict=True)):
        c.recorder.begin(row, points[i] if points is not None else None)
    batch.keep([i for i, c in enumerate(configs) if c.spec.steps > 0])
    while batch.rows:
        losses, norms = batch.step()
        active = batch.active()
        params = [p[: len(active)] for p in batch.params(detach=True)]  # not the spare
        points = objective.points(params)
        kept, due = [], []
        for i, c in enumerate(active):
            evaluate, over = c.after_step(
                losses[i], norms[i], points[i] if points is not None else None
            )
            if evaluate:
                due.append(i)
            if not over:
                kept.append(i)
        if due:
            if len(due) < len(active):
                index = torch.tensor(due, dtype=torch.long)
                params = [p[index] for p in params]
            for i, row in zip(due, objective.evaluate(params), strict=True):
                active[i].recorder.evaluated(row)
        if len(kept) < len(active):
            batch.keep(kept)
    return [c.finish() for c in configs]


def _batch(objective: Objective, configs: list[_Config], problems: list[Problem]) -> _Batch:
    """Every configuration's weights stacked along a new first dimension, one flat buffer
    per param group, fresh state."""
    first = configs[0].opt
    if any(c.opt.structure() != first.structure() for c in configs):
        raise ValueError("run_batched needs one rule per parameter across configurations")
    groups = []
    for g, (rule, _) in enumerate(first.groups):
        members = [i for i, gi in enumerate(first.group_of) if gi == g]
        weights = [problems[0].params[i] for i in members]
        if len({w.dtype for w in weights}) != 1 or any(w.is_complex() for w in weights):
            raise ValueError("run_batched needs one real dtype per param group")
        rows = [torch.cat([q.params[i].detach().reshape(-1) for i in members]) for q in problems]
        flat = torch.stack(rows).requires_grad_()
        shapes = [w.shape for w in weights]
        # Slots start per configuration (Adagrad's initial_accumulator_value may differ).
        rows_hp = [c.opt.groups[g][1] for c in configs]
        starts = [rule.init(row, hp) for row, hp in zip(flat.detach(), rows_hp, strict=True)]
        state = {k: torch.stack([s[k] for s in starts]) for k in rule.slots}
        groups.append(_Group(rule, members, shapes, flat, state))
    return _Batch(objective, configs, groups, len(first.group_of), list(range(len(configs))))
