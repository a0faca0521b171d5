"""The flat-buffer engine (opt-in): all parameters of a group live in one contiguous buffer.

This engine MOVES parameter storage (``param.data`` becomes a view of the buffer), which is
what the ecosystem sees: see the README before checkpointing with it.

Parameters are re-homed as views of one 1-D buffer per (group, dtype, device); their
optimizer state becomes views of matching flat slot buffers, so ``state_dict`` and the
reference engine see ordinary per-parameter tensors. A step is then ONE call of the rule
over the whole buffer: compiled by ``torch.compile`` into a single fused pass (the
coefficients travel in a small tensor, so schedules never recompile), or run eagerly
(``flat-eager``, a few passes, no compile cost).

Gradients: :meth:`FlatBucket.point_grads` makes every ``.grad`` a view of the flat gradient
buffer, so autograd accumulates straight into it (what ``zero_grad(set_to_none=False)``
does). Gradients that arrive as separate tensors (after ``zero_grad()``'s default
``set_to_none=True``, or assigned by user code) are gathered with one copy. A parameter
without a gradient, or whose step count differs from the others, makes the bucket fall back
to the reference engine for that step: correct first, fast when it can be.
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..rules.base import Rule, advance
from .policy import compute_dtype
from .reference import compute, write_back

_GRAD = operator.attrgetter("grad")
_STEP = operator.itemgetter("step")
_COMPILED: dict[tuple[Rule, tuple[str, ...]], Any] = {}
_COMPILE_FAILED: set[Rule] = set()


def flat_update(
    rule: Rule,
    names: tuple[str, ...],
    p: torch.Tensor,
    g: torch.Tensor,
    slots: dict[str, torch.Tensor],
    cvec: torch.Tensor,
) -> None:
    """The rule over flat buffers, in place; coefficients arrive packed in ``cvec``."""
    c = {n: cvec[i] for i, n in enumerate(names)}
    write_back(p, slots, *compute(rule, p, g, slots, c))


def _compiled(rule: Rule, names: tuple[str, ...]) -> Any:
    key = (rule, names)
    if key not in _COMPILED:

        def run(p, g, slots, cvec):
            flat_update(rule, names, p, g, slots, cvec)

        # Dynamo keys its cache and recompile limit by code object: give each rule its own,
        # so that many rules do not share one limit of recompilations.
        run.__code__ = run.__code__.replace(co_name=f"{rule.name}_step_{len(_COMPILED)}")
        _COMPILED[key] = torch.compile(run, dynamic=True, fullgraph=True)
    return _COMPILED[key]


def run_flat(
    rule: Rule,
    p: torch.Tensor,
    g: torch.Tensor,
    slots: dict[str, torch.Tensor],
    c: Mapping[str, float],
    *,
    compiled: bool,
) -> None:
    """One step of ``rule`` with coefficients ``c`` over 1-D buffers in place: one compiled
    pass, or eager ops."""
    names = tuple(c)
    cvec = torch.tensor([c[n] for n in names], dtype=compute_dtype(p.dtype), device=p.device)
    if compiled and rule not in _COMPILE_FAILED:
        try:
            with warnings.catch_warnings():
                # torch's own compiler stack emits DeprecationWarnings about itself
                warnings.simplefilter("ignore", DeprecationWarning)
                _compiled(rule, names)(p, g, slots, cvec)
            return
        except Exception as exc:  # no C++ compiler, unsupported device...: run eagerly
            _COMPILE_FAILED.add(rule)
            warnings.warn(
                f"descentlab: torch.compile failed for rule {rule.name!r} ({exc!s:.200}); "
                "running the same rule eagerly on the flat buffers",
                RuntimeWarning,
                stacklevel=3,
            )
    flat_update(rule, names, p, g, slots, cvec)


class FlatBucket:
    """One flat buffer of parameters (same group, dtype and device) with its state."""

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        prepare: Callable[[torch.Tensor], tuple[dict[str, Any], dict[str, Any]]],
        rule: Rule,
        compiled: bool,
    ) -> None:
        """``prepare(p)`` gives the state of ``p`` (every slot present) and the dict holding
        its ``step`` counter (the state itself, or a private one: see GroupPlan)."""
        self.params = list(params)
        self._members: list[torch.Tensor] = list(params)
        self.rest: list[torch.Tensor] = []
        self.rule = rule
        self.compiled = compiled
        first = self.params[0]
        dtype, device = first.dtype, first.device
        sizes = [p.numel() for p in self.params]
        total = sum(sizes)
        self.p_flat = torch.empty(total, dtype=dtype, device=device)
        self.g_flat = torch.zeros(total, dtype=dtype, device=device)
        self.slots = {k: torch.zeros(total, dtype=dtype, device=device) for k in rule.slots}
        prepared = [prepare(p) for p in self.params]
        self.homes = [home for _, home in prepared]
        self.steps = torch.stack([home["step"].detach() for home in self.homes]).cpu()
        self.p_views: list[torch.Tensor] = []
        self.g_views: list[torch.Tensor] = []
        self.steps_views: list[torch.Tensor] = []
        self.slot_views: dict[str, list[torch.Tensor]] = {k: [] for k in rule.slots}
        offset = 0
        for i, (p, n, (s, home)) in enumerate(zip(self.params, sizes, prepared, strict=True)):
            sl = slice(offset, offset + n)
            offset += n
            pv = self.p_flat[sl].view_as(p)
            pv.copy_(p.detach())
            p.data = pv  # re-home: the parameter is now a view of the flat buffer
            gv = self.g_flat[sl].view_as(p)
            if p.grad is not None:
                gv.copy_(p.grad)
            self.p_views.append(pv)
            self.g_views.append(gv)
            home["step"] = self.steps[i]
            self.steps_views.append(home["step"])
            for k, flat in self.slots.items():
                view = flat[sl].view_as(p)
                view.copy_(s[k])
                s[k] = view
                self.slot_views[k].append(view)
        self.ptrs = [p.data_ptr() for p in self.params]

    @property
    def members(self) -> list[torch.Tensor]:
        """Every parameter of the group, buffered or not (``rest``: those not buffered)."""
        return self._members

    @members.setter
    def members(self, group_params: list[torch.Tensor]) -> None:
        self._members = group_params
        inside = set(map(id, self.params))
        self.rest = [p for p in group_params if id(p) not in inside]

    def intact(self, group_params: Sequence[torch.Tensor], rule: Rule) -> bool:
        """Same group, same rule, and nobody replaced a buffered parameter's ``.data``?"""
        return (
            (rule is self.rule or rule == self.rule)
            and len(group_params) == len(self._members)
            and all(map(operator.is_, group_params, self._members))
            and list(map(torch.Tensor.data_ptr, self.params)) == self.ptrs
        )

    def state_intact(
        self, state: Any, home: Callable[[torch.Tensor], Mapping[str, Any] | None]
    ) -> bool:
        """``load_state_dict`` replaces state tensors: then the bucket must be rebuilt.

        ``home(p)`` is the dict holding the step counter of ``p`` (None if it has none)."""
        homes = list(map(home, self.params))
        try:
            if not all(map(operator.is_, map(_STEP, homes), self.steps_views)):  # type: ignore[arg-type]
                return False
            if self.slot_views:
                states = list(map(state.__getitem__, self.params))
                for k, views in self.slot_views.items():
                    if not all(map(operator.is_, map(operator.itemgetter(k), states), views)):
                        return False
        except (KeyError, TypeError):  # a counter or a slot is gone
            return False
        return True

    def point_grads(self) -> None:
        """Make every existing ``.grad`` a view of the flat gradient buffer, zeroed."""
        self.g_flat.zero_()
        for p, gv in zip(self.params, self.g_views, strict=True):
            g = p.grad
            if g is not None and g is not gv:  # the setter's checks cost microseconds
                p.grad = gv

    def gather(self) -> bool:
        """Bring gradients into the flat buffer; False if one is missing or sparse."""
        grads = list(map(_GRAD, self.params))
        if all(map(operator.is_, grads, self.g_views)):
            return True
        if any(g is None or g.is_sparse for g in grads):
            return False  # the reference engine skips None and refuses sparse gradients
        stray = [(gv, g) for g, gv in zip(grads, self.g_views, strict=True) if g is not gv]
        torch._foreach_copy_([gv for gv, _ in stray], [g for _, g in stray if g is not None])
        return True

    def step(self, hp: Mapping[str, float]) -> None:
        """One fused step of every parameter in the bucket (all share the step count)."""
        advance(self.steps)  # every member's counter: they are views of this tensor
        run_flat(
            self.rule,
            self.p_flat,
            self.g_flat,
            self.slots,
            self.rule.coefficients(hp, int(self.steps[0])),
            compiled=self.compiled,
        )

    def uniform_steps(self) -> bool:
        return bool((self.steps == self.steps[0]).all())
