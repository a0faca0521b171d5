"""Stacked objectives: several configurations' losses and evaluations, computed together.

The batched runner (:mod:`descentlab.lab.batched`) trains K configurations of one workload as
one problem; this module is that problem's arithmetic. :func:`objective_for` recognises the
K problems a build made (by what ``Problem.parts`` names: the 2-D landscapes, the noisy
quadratic, models on in-memory tensors without buffers) and returns an :class:`Objective`
computing every configuration's loss in one batched forward pass (the ``[A, ...]`` stacked
parameters in, ``[A]`` losses out) and run_one's evaluations in batched passes.

Each slice's arithmetic is its own (batched matrix products, one per slice; per-row
reductions; a lone configuration computed beside a spare copy of itself, see
``Objective.pairs``), so a configuration's numbers do not depend on which others share
its batch.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.func import functional_call, vmap

from .workloads import Problem

__all__ = ["ACTIVATIONS", "EVAL_ROWS", "Objective", "linear_layers", "objective_for"]

Tensor = torch.Tensor
# Samples x configurations per batched evaluation pass: bounds memory, and keeps a pass's
# activations near the CPU's caches (digits-mlp's 21 configurations evaluate ~15% faster in
# two passes of 11 than in one of 21; a configuration's numbers do not depend on its pass).
EVAL_ROWS = 1 << 14


# ---------------------------------------------------------------- batched objectives


class Objective(ABC):
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
class _Landscape(Objective):
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
class _Quadratic(Objective):
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
class _Supervised(Objective):
    """A model on in-memory tensors, every configuration's forward pass at once.

    A model that is a ``Linear``, or a ``Sequential`` of ``Linear`` layers and parameter-free
    element-wise activations (:data:`ACTIVATIONS`), on samples that are vectors, runs as
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
    layers: list[tuple[torch.nn.Module, int, int | None]] | None = None  # see linear_layers
    columns: dict[int, Tensor] = field(default_factory=dict)  # x and x_test transposed, by id
    pairs = True

    def __post_init__(self) -> None:
        if self.x.dim() == 2:
            self.layers = linear_layers(self.model, self.names)
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
                h = ACTIVATIONS[type(layer)](h)
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
    """A lone configuration's parameters with a spare copy (see ``Objective.pairs``)."""
    return [torch.cat([p, p]) for p in params] if len(params[0]) == 1 else params


# Parameter-free element-wise activations, applied in place to a batched matrix product's
# output (which its backward does not read): the values of the module's own forward.
ACTIVATIONS: dict[type, Callable[[Tensor], Tensor]] = {
    torch.nn.ReLU: torch.Tensor.relu_,
    torch.nn.Tanh: torch.Tensor.tanh_,
    torch.nn.Sigmoid: torch.Tensor.sigmoid_,
}


def linear_layers(
    model: torch.nn.Module, names: list[str]
) -> list[tuple[torch.nn.Module, int, int | None]] | None:
    """``model`` as a list of (layer, weight's position in ``names``, bias's or None), with
    -1 for an activation; None unless it is a ``Linear`` or a ``Sequential`` of them and of
    :data:`ACTIVATIONS`."""
    children = list(model.named_children()) if isinstance(model, torch.nn.Sequential) else None
    items = [("", model)] if children is None else children
    where = {name: i for i, name in enumerate(names)}
    layers: list[tuple[torch.nn.Module, int, int | None]] = []
    for name, layer in items:
        prefix = f"{name}." if name else ""
        if type(layer) is torch.nn.Linear:
            bias = where.get(prefix + "bias") if layer.bias is not None else None
            layers.append((layer, where[prefix + "weight"], bias))
        elif type(layer) in ACTIVATIONS and not any(True for _ in layer.parameters()):
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


def _landscape(problems: list[Problem]) -> Objective | None:
    parts = [q.parts for q in problems]
    if not _trains_w(problems) or any(p["noise"] != parts[0]["noise"] for p in parts):
        return None
    # f is the same function in every configuration (the specs share their options)
    return _Landscape(parts[0]["f"], float(parts[0]["noise"]), [p["gen"] for p in parts])


def _quadratic(problems: list[Problem]) -> Objective | None:
    parts = [q.parts for q in problems]
    if not _trains_w(problems) or not _same(parts, "h", "centers"):
        return None
    return _Quadratic(parts[0]["h"], parts[0]["centers"])


def _supervised(problems: list[Problem]) -> Objective | None:
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
_MAKERS: dict[str, Callable[[list[Problem]], Objective | None]] = {
    "landscape": _landscape,
    "quadratic": _quadratic,
    "supervised": _supervised,
}


def objective_for(problems: list[Problem]) -> Objective | None:
    """The batched form of these problems (one per configuration), or None if unknown."""
    kinds = {p.parts.get("kind") for p in problems}
    maker = _MAKERS.get(str(kinds.pop())) if len(kinds) == 1 else None
    if maker is None or len({p.n_train for p in problems}) != 1:
        return None
    return maker(problems)
