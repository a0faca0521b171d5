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
own generator seeded ``10_000 + seed``), its gradient noise, its step count, its evaluations
and its divergence. The K losses are summed, never averaged, before the backward pass, so
each slice's gradient is its own loss's. A configuration whose loss blows up is recorded as
run_one records it and then leaves the batch (its rows are dropped from the parameters and
the optimizer state), so a NaN in one slice can reach no other and is never multiplied by a
mask. The norms run_one's telemetry records (gradient, update, weights) are computed from
the same per-parameter sums of squares and combined by the same formula; on the 2-D
landscapes, whose arithmetic is element-wise, every field equals run_one's bit for bit.

A configuration's numbers do not depend on which other configurations share its batch: each
slice's arithmetic is its own (batched matrix products, one per slice; per-row reductions;
a lone configuration computed beside a spare copy of itself, see ``_Objective.pairs``), so
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

import copy
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.func import functional_call, vmap

from ..engines.reference import LOW_PRECISION, apply_reference, compute, write_back
from ..monitoring import _total
from ..rules.base import Rule
from . import runner
from .runner import (
    _CLASSES,
    DIVERGED_FACTOR,
    Record,
    RunSpec,
    _batches,
    param_groups,
)
from .workloads import WORKLOADS, Problem

__all__ = ["can_batch", "run_batched"]

Tensor = torch.Tensor
Build = Callable[[int, dict[str, Any]], Problem]
# Samples x configurations per batched evaluation pass: bounds memory, and keeps a pass's
# activations near the CPU's caches (digits-mlp's 21 configurations evaluate ~15% faster in
# two passes of 11 than in one of 21; a configuration's numbers do not depend on its pass).
EVAL_ROWS = 1 << 14
UPDATE_ELEMENTS = 1 << 16  # numbers per thread in a piece of a batched update (see _step_param)


# ---------------------------------------------------------------- batched objectives


class _Objective(ABC):
    """The losses and evaluations of several configurations, computed together.

    ``pairs``: whether its arithmetic goes through batched matrix products, which torch
    computes another way for a batch of one (one threaded product; a matrix-vector product
    for a single column) than for two or more (one product per slice): a lone
    configuration is then computed as a pair with a copy of itself, so that a run's numbers
    never depend on how many configurations share its batch.
    """

    pairs = False

    @abstractmethod
    def losses(self, params: list[Tensor], rows: list[int], indices: Tensor | None) -> Tensor:
        """Losses ``[A]`` of ``A`` stacked parameter sets (each of ``params`` is ``[A, ...]``).

        ``rows`` are the configurations' positions in the batch as it started (to find what
        each keeps of its own, a noise generator); ``indices`` ``[A, B]`` holds each
        configuration's mini-batch, or is None for the full training set.
        """

    @abstractmethod
    def evaluate(self, params: list[Tensor]) -> list[dict[str, float]]:
        """run_one's evaluation of each stacked parameter set: ``train_loss`` (the loss on
        the full training set), then what the problem's ``evaluate()`` adds."""

    def points(self, params: list[Tensor]) -> list[tuple[float, float]] | None:
        """Each configuration's position (a landscape's ``point()``), or None."""
        return None


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

    def evaluate(self, params: list[Tensor]) -> list[dict[str, float]]:
        with torch.no_grad():
            values = self.losses(params, [], None).tolist()
        return [{"train_loss": v} for v in values]

    def points(self, params: list[Tensor]) -> list[tuple[float, float]] | None:
        return [(x, y) for x, y in params[0].detach().tolist()]


@dataclass
class _Quadratic(_Objective):
    """The noisy quadratic: ``0.5 (w - c)^T H (w - c)`` averaged over the batch's centers."""

    h: Tensor
    centers: Tensor
    pairs = True

    def losses(self, params: list[Tensor], rows: list[int], indices: Tensor | None) -> Tensor:
        (w,) = params
        c = self.centers if indices is None else self.centers[indices]  # [n, D] or [A, B, D]
        d = w.unsqueeze(1) - c  # [A, n or B, D]
        hd = torch.bmm(d, self.h.expand(len(d), *self.h.shape))  # one product per slice
        return 0.5 * (hd * d).sum(-1).mean(-1)

    def evaluate(self, params: list[Tensor]) -> list[dict[str, float]]:
        with torch.no_grad():
            values = self.losses(_paired(params), [], None)[: len(params[0])].tolist()
        return [{"train_loss": v} for v in values]


@dataclass
class _Supervised(_Objective):
    """A model on in-memory tensors, every configuration's forward pass at once.

    A model that is a ``Linear``, or a ``Sequential`` of ``Linear`` layers and parameter-free
    element-wise activations (:data:`_ACTIVATIONS`), on samples that are vectors, runs as
    batched matrix products on the transposed activations (``[A, features, samples]``: the
    classes of a cross-entropy then lie along a dimension its kernel vectorizes), the bias
    added inside them as ``nn.Linear``'s ``addmm`` does; any other model runs one
    ``functional_call`` per configuration, vmapped. The inputs are given to every
    configuration as a batch (the full set expanded, not folded into one matrix product),
    so that each configuration's arithmetic is the same whatever the batch's size.
    """

    model: torch.nn.Module  # a private copy: only its structure is used
    names: list[str]
    x: Tensor
    y: Tensor
    x_test: Tensor | None
    y_test: Tensor | None
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    classification: bool
    layers: list[tuple[torch.nn.Module, int, int | None]] | None = None  # see _linear_layers
    columns: dict[int, Tensor] = field(default_factory=dict)  # x and x_test transposed, by id
    pairs = True

    def __post_init__(self) -> None:
        if self.x.dim() == 2:
            self.layers = _linear_layers(self.model, self.names)
        if self.layers is not None:
            for data in (self.x, self.x_test):
                if data is not None:
                    self.columns[id(data)] = data.t().contiguous()

    def losses(self, params: list[Tensor], rows: list[int], indices: Tensor | None) -> Tensor:
        if indices is None:  # the full training set, shared by every configuration
            return self._losses(self._forward(params, self.x), self.y)
        return self._losses(self._forward(params, self.x[indices]), self.y[indices])

    def _forward(self, params: list[Tensor], x: Tensor) -> Tensor:
        """The outputs ``[A, n, ...]`` for inputs ``x``: the training or test set (shared by
        every configuration), or ``[A, n, ...]``, one batch per configuration."""
        a = len(params[0])
        shared = x.dim() == self.x.dim()
        if self.layers is None:
            return vmap(self._one)(tuple(params), x.expand(a, *x.shape) if shared else x)
        h = self.columns[id(x)].expand(a, -1, -1) if shared else x.transpose(1, 2)
        for layer, w, b in self.layers:
            if w < 0:
                h = _ACTIVATIONS[type(layer)](h)
            elif b is None:
                h = torch.bmm(params[w], h)
            else:
                h = torch.baddbmm(params[b].unsqueeze(2), params[w], h)
        return h.transpose(1, 2)

    def _one(self, params: tuple[Tensor, ...], x: Tensor) -> Tensor:
        out: Tensor = functional_call(self.model, dict(zip(self.names, params, strict=True)), (x,))
        return out

    def _losses(self, out: Tensor, y: Tensor) -> Tensor:
        """Each configuration's loss ``[A]`` from its outputs ``[A, n, ...]`` and the targets
        ``[n, ...]`` (shared) or ``[A, n, ...]``. Cross-entropy on class indices and the
        mean squared error are computed per sample for all at once, then averaged per
        configuration (their mean reduction); another loss runs vmapped."""
        a = len(out)
        if y.dim() == self.y.dim():
            y = y.expand(a, *y.shape)
        loss = self.loss_fn
        f = torch.nn.functional
        if loss is f.cross_entropy and out.dim() == 3 and not torch.is_floating_point(y):
            # the "K-dimensional" form: classes along dimension 1, a loss per (run, sample)
            return f.cross_entropy(out.transpose(1, 2), y, reduction="none").mean(1)
        if loss is f.mse_loss and out.shape == y.shape:
            return f.mse_loss(out, y, reduction="none").reshape(a, -1).mean(1)
        return vmap(self._loss)(out, y)

    def _loss(self, out: Tensor, y: Tensor) -> Tensor:
        return self.loss_fn(out, y).reshape(())

    def evaluate(self, params: list[Tensor]) -> list[dict[str, float]]:
        """As ``supervised_problem``'s loss(None) and evaluate(), a chunk of configurations
        per pass (at most ``EVAL_ROWS`` samples x configurations: bounded memory, and
        activations that stay in the CPU's caches)."""
        rows: list[dict[str, float]] = []
        chunk = max(1, EVAL_ROWS // max(1, len(self.x)))
        with torch.no_grad():
            for start in range(0, len(params[0]), chunk):
                part = [p[start : start + chunk] for p in params]
                rows += self._evaluate(_paired(part))[: len(part[0])]
        return rows

    def _evaluate(self, params: list[Tensor]) -> list[dict[str, float]]:
        train = self._losses(self._forward(params, self.x), self.y).tolist()
        rows = [{"train_loss": value} for value in train]
        if self.x_test is None or self.y_test is None:
            return rows
        out = self._forward(params, self.x_test)
        for row, value in zip(rows, self._losses(out, self.y_test).tolist(), strict=True):
            row["test_loss"] = value
        if self.classification:
            acc = (out.contiguous().argmax(-1) == self.y_test).double().mean(-1).tolist()
            for row, value in zip(rows, acc, strict=True):
                row["test_acc"] = value
        return rows


def _paired(params: list[Tensor]) -> list[Tensor]:
    """A lone configuration's parameters with a spare copy (see ``_Objective.pairs``)."""
    return [torch.cat([p, p]) for p in params] if len(params[0]) == 1 else params


# Parameter-free element-wise activations, applied in place to a batched matrix product's
# output (which its backward does not read): the values of the module's own forward.
_ACTIVATIONS: dict[type, Callable[[Tensor], Tensor]] = {
    torch.nn.ReLU: torch.Tensor.relu_,
    torch.nn.Tanh: torch.Tensor.tanh_,
    torch.nn.Sigmoid: torch.Tensor.sigmoid_,
}


def _linear_layers(
    model: torch.nn.Module, names: list[str]
) -> list[tuple[torch.nn.Module, int, int | None]] | None:
    """``model`` as a list of (layer, weight's position in ``names``, bias's or None), with
    -1 for an activation; None unless it is a ``Linear`` or a ``Sequential`` of them and of
    :data:`_ACTIVATIONS`."""
    children = list(model.named_children()) if isinstance(model, torch.nn.Sequential) else None
    items = [("", model)] if children is None else children
    where = {name: i for i, name in enumerate(names)}
    layers: list[tuple[torch.nn.Module, int, int | None]] = []
    for name, layer in items:
        prefix = f"{name}." if name else ""
        if type(layer) is torch.nn.Linear:
            bias = where.get(prefix + "bias") if layer.bias is not None else None
            layers.append((layer, where[prefix + "weight"], bias))
        elif type(layer) in _ACTIVATIONS and not any(True for _ in layer.parameters()):
            layers.append((layer, -1, None))
        else:
            return None
    return layers


# ---------------------------------------------------------------- recognising a workload


def _same(parts: Sequence[Mapping[str, Any]], *names: str) -> bool:
    """Whether every configuration holds equal tensors (or None) under ``names``."""
    first = parts[0]

    def equal(a: Any, b: Any) -> bool:
        if a is None or b is None:
            return a is b
        return isinstance(a, Tensor) and isinstance(b, Tensor) and torch.equal(a, b)

    return all(equal(p[n], first[n]) for p in parts[1:] for n in names)


def _trains_w(problems: list[Problem]) -> bool:
    """Whether each problem's one parameter is the ``w`` its loss reads."""
    return all(len(q.params) == 1 and q.params[0] is q.parts.get("w") for q in problems)


def _landscape(problems: list[Problem]) -> _Objective | None:
    parts = [q.parts for q in problems]
    if not _trains_w(problems) or any(p["noise"] != parts[0]["noise"] for p in parts):
        return None
    # f is the same function in every configuration (the specs share their options)
    return _Landscape(parts[0]["f"], float(parts[0]["noise"]), [p["gen"] for p in parts])


def _quadratic(problems: list[Problem]) -> _Objective | None:
    parts = [q.parts for q in problems]
    if not _trains_w(problems) or not _same(parts, "h", "centers"):
        return None
    return _Quadratic(parts[0]["h"], parts[0]["centers"])


def _supervised(problems: list[Problem]) -> _Objective | None:
    parts = [q.parts for q in problems]
    if not _same(parts, "x", "y", "x_test", "y_test"):
        return None
    first = parts[0]
    model = first["model"]
    if not isinstance(model, torch.nn.Module) or any(True for _ in model.buffers()):
        return None  # buffers (batch-norm statistics...) change in the forward pass
    for p, problem in zip(parts, problems, strict=True):
        if p["loss_fn"] is not first["loss_fn"] or p["classification"] != first["classification"]:
            return None
        if not _trains_all(p["model"], problem):
            return None
    names = [name for name, _ in model.named_parameters()]
    return _Supervised(
        copy.deepcopy(model),
        names,
        first["x"],
        first["y"],
        first["x_test"],
        first["y_test"],
        first["loss_fn"],
        bool(first["classification"]),
    )


def _trains_all(model: torch.nn.Module, problem: Problem) -> bool:
    """Whether ``problem`` trains every weight of ``model``, in its order (none frozen)."""
    weights = list(model.parameters())
    return len(weights) == len(problem.params) and all(
        w is p for w, p in zip(weights, problem.params, strict=True)
    )


# The batched form of each kind of problem (``Problem.parts["kind"]``).
_MAKERS: dict[str, Callable[[list[Problem]], _Objective | None]] = {
    "landscape": _landscape,
    "quadratic": _quadratic,
    "supervised": _supervised,
}


def _objective(problems: list[Problem]) -> _Objective | None:
    """The batched form of these problems (one per configuration), or None if unknown."""
    kinds = {p.parts.get("kind") for p in problems}
    maker = _MAKERS.get(str(kinds.pop())) if len(kinds) == 1 else None
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
    dtype = torch.float32 if p.dtype in LOW_PRECISION else p.dtype
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
    acc = torch.float64 if p.dtype == torch.float64 else torch.float32
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
    """What stays one configuration's own inside the batch, and its record."""

    spec: RunSpec
    opt: _Optimizer
    batches: Iterator[Tensor] | None
    record: Record
    # Steps taken. The drop-ins start a fresh parameter's count at 0 and add 1 before each
    # update (Optimizer._prepare_state, _reference_step), so the first update is step 1: the
    # one HeavyBall starts its buffer at and Adam's bias corrections count from. (SGD without
    # momentum keeps no state, and its private counter starts at 1, but no coefficient of
    # that rule reads the step.)
    count: int = 0
    limit: float = 0.0  # a loss beyond this (or not finite) has diverged
    cpu: float = 0.0
    wall: float = 0.0

    def begin(self, evaluation: dict[str, float], point: tuple[float, float] | None) -> None:
        self.record.evals.append({"step": 0, **evaluation})
        if point is not None:
            self.record.points.append(point)
        self.limit = DIVERGED_FACTOR * max(abs(self.record.evals[0]["train_loss"]), 1.0)

    def after_step(
        self, value: float, norms: tuple[float, float, float], point: tuple[float, float] | None
    ) -> tuple[bool, bool]:
        """Record a step as run_one does; (evaluate now, the run is over).

        ``norms`` are the step's gradient, update and (previous) weight norms, ``point`` the
        position after the step (landscapes). A diverged run is over and not evaluated.
        """
        rec = self.record
        rec.loss.append(value)
        rec.lr.append(self.opt.lr)
        rec.grad_norm.append(norms[0])
        rec.update_norm.append(norms[1])
        rec.param_norm.append(norms[2])
        rec.time.append(self.cpu)
        if point is not None:
            rec.points.append(point)
        if not math.isfinite(value) or abs(value) > self.limit:
            rec.diverged = True
            return False, True
        step = len(rec.loss)
        last = step == self.spec.steps
        return step % self.spec.eval_every == 0 or last, last

    def finish(self) -> Record:
        rec = self.record
        if rec.diverged:
            rec.evals.append({"step": len(rec.loss), "train_loss": float("nan")})
        rec.seconds, rec.wall_seconds = self.cpu, self.wall
        rec.load_end = runner.machine_load()[0]
        return rec


def _config(spec: RunSpec, problem: Problem, load: list[float], cpus: int, k: int) -> _Config:
    gen = torch.Generator().manual_seed(10_000 + spec.seed)  # run_one's mini-batch order
    batch = spec.regime.batch_size(problem.n_train)
    batches = iter(_batches(problem.n_train, batch, gen)) if batch and problem.n_train else None
    record = Record(spec=spec.describe(), id=spec.id, load=load, cpus=cpus, batch=k)
    return _Config(spec, _optimizer(spec, problem), batches, record)


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

    objective: _Objective
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
            c.count += 1
        steps = [c.count for c in active]
        stats = []
        for i, g in enumerate(self.groups):
            coefficients = _coefficients(g.rule, [a.opt.groups[i][1] for a in active], steps)
            stats.append(_step_param(g.rule, g.flat, g.state, coefficients, g.sizes))
        return [s for s in stats if s is not None]

    def keep(self, kept: list[int]) -> None:
        """Keep only slices ``kept``: a finished or diverged run leaves the batch whole.

        A configuration left alone keeps a spare copy of itself (see :class:`_Objective`'s
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
    objective = _objective(problems)
    if objective is None:
        raise ValueError(f"workload {specs[0].workload!r} cannot be batched; use run_one")
    load, cpus = runner.machine_load()  # looked up there: run_one's, even when replaced
    configs = [_config(s, p, load, cpus, len(specs)) for s, p in zip(specs, problems, strict=True)]
    batch = _batch(objective, configs, problems)
    params = batch.params(detach=True)
    points = objective.points(params)
    for i, (c, row) in enumerate(zip(configs, objective.evaluate(params), strict=True)):
        c.begin(row, points[i] if points is not None else None)
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
                active[i].record.evals.append({"step": active[i].count, **row})
        if len(kept) < len(active):
            batch.keep(kept)
    return [c.finish() for c in configs]


def _batch(objective: _Objective, configs: list[_Config], problems: list[Problem]) -> _Batch:
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
        groups.append(_Group(rule, members, shapes, flat, rule.init(flat.detach())))
    return _Batch(objective, configs, groups, len(first.group_of), list(range(len(configs))))
