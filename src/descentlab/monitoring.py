"""Opt-in optimizer telemetry: what each step did, sampled every N steps.

:func:`telemetry` attaches to any ``torch.optim`` optimizer (descentlab's drop-ins included)
through torch's step hooks, and every ``every`` steps records, per param group, the lr, the
gradient norm, the update norm ``||w_t - w_{t-1}||``, the weight norm ``||w_{t-1}||`` and
their ratio (the update-to-weight ratio, ~1e-3 per step in healthy training), and per tensor
on request. It also counts skipped steps: iterations whose gradients were thrown away without
an optimizer step (``torch.amp.GradScaler`` skips the step when it finds an inf/NaN), and
fused steps that ``GradScaler`` told to skip. It only reads: a run with telemetry is
bit-identical to one without.

Cost: on a sampled step, one copy of the parameters that have gradients (kept in a buffer
from the first sampled step until :meth:`Telemetry.remove`, so it costs the memory of one
more copy of those parameters) and four multi-tensor passes (copy, subtract, two norms) plus
a norm of the gradients; other steps cost two Python hook calls. ``descentlab bench``
measures the overhead at ``every=10`` on the GPT-like layout.

The history is a list of :class:`Sample` (``rows()`` gives dicts for pandas), exported to
TensorBoard by :meth:`Telemetry.to_tensorboard`; the lab's runner records its per-step lr,
gradient and update norms with the same meter.

Example:
    >>> import torch
    >>> from descentlab import telemetry
    >>> model = torch.nn.Linear(4, 1)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> tm = telemetry(opt, model, every=2)
    >>> for _ in range(3):
    ...     opt.zero_grad()
    ...     model(torch.ones(8, 4)).pow(2).mean().backward()
    ...     opt.step()
    >>> [(s.step, s.group, s.lr) for s in tm.history]
    [(1, 0, 0.1), (3, 0, 0.1)]
    >>> s = tm.history[0]
    >>> abs(s.update_norm - 0.1 * s.grad_norm) < 1e-6  # plain SGD: the update is lr * grad
    True
    >>> tm.remove()
"""

from __future__ import annotations

import abc
import math
import os
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Self

import torch
from torch import nn

__all__ = ["Sample", "StepHooks", "Telemetry", "UpdateMeter", "norms", "telemetry"]

_SIXTEEN = (torch.float16, torch.bfloat16)


def norms(tensors: Sequence[torch.Tensor]) -> list[float]:
    """The 2-norm of each tensor, as Python floats: one multi-tensor pass per dtype, one host
    read per device (16-bit tensors are reduced in float32, so a large one cannot overflow)."""
    out: list[float] = [0.0] * len(tensors)
    groups: dict[tuple[torch.device, torch.dtype, bool], list[int]] = {}
    for k, t in enumerate(tensors):
        groups.setdefault((t.device, t.dtype, t.is_sparse), []).append(k)
    by_device: dict[torch.device, tuple[list[int], list[torch.Tensor]]] = {}
    with torch.no_grad():
        for (device, dtype, sparse), ks in groups.items():
            if sparse:
                values = [tensors[k].coalesce().values().norm() for k in ks]
            else:
                wide = torch.float32 if dtype in _SIXTEEN else None
                values = list(torch._foreach_norm([tensors[k] for k in ks], 2, dtype=wide))
            slot = by_device.setdefault(device, ([], []))
            slot[0].extend(ks)
            slot[1].append(torch.stack(values).double())
        for ks, parts in by_device.values():
            for k, v in zip(ks, torch.cat(parts).tolist(), strict=True):
                out[k] = float(v)
    return out


def _total(values: Iterable[float]) -> float:
    return math.sqrt(sum(v * v for v in values))


class UpdateMeter:
    """Measures ``||w_t - w_{t-1}||`` and ``||w_{t-1}||`` of a list of tensors over a step.

    ``begin(params)`` copies them into buffers kept for the next time (allocated once per
    tensor); ``end()`` returns the norms of the differences and of the copies. Shared by
    :func:`telemetry` and :func:`descentlab.guard`'s update-ratio check.
    """

    def __init__(self) -> None:
        self._buffers: dict[int, torch.Tensor] = {}
        self._params: list[torch.Tensor] = []
        self._copies: list[torch.Tensor] = []

    def begin(self, params: Sequence[torch.Tensor]) -> None:
        """Copy ``params`` (their values before the step)."""
        with torch.no_grad():
            self._params = [p.detach() for p in params]
            self._copies = []
            for p, view in zip(params, self._params, strict=True):
                buf = self._buffers.get(id(p))  # by the parameter: a detached view is new
                if buf is None or buf.shape != p.shape or buf.dtype != p.dtype:
                    buf = self._buffers[id(p)] = torch.empty_like(view)
                self._copies.append(buf)
            if self._copies:
                torch._foreach_copy_(self._copies, self._params)

    @property
    def active(self) -> bool:
        """Whether ``begin`` was called and ``end`` not yet."""
        return bool(self._params)

    def end(self) -> tuple[list[float], list[float]]:
        """(update norms, weight norms before the update), one per tensor of ``begin``."""
        params, copies = self._params, self._copies
        self._params, self._copies = [], []
        if not params:
            return [], []
        with torch.no_grad():
            before = norms(copies)
            torch._foreach_sub_(copies, params)  # w_{t-1} - w_t: the (negated) update
            update = norms(copies)
        return update, before

    def clear(self) -> None:
        """Free the buffers."""
        self._buffers.clear()
        self._params, self._copies = [], []


class StepHooks(abc.ABC):
    """What :func:`telemetry` and :func:`descentlab.guard` share: step hooks on an optimizer
    and an :class:`UpdateMeter`, removed together by ``remove()``; a context manager."""

    optimizer: torch.optim.Optimizer
    _handles: list[Any]
    _meter: UpdateMeter
    _names: dict[int, str]  # id(param) -> its name in the model

    def _name(self, g: int, i: int, p: torch.Tensor) -> str:
        """The parameter's name in the model, else in its group's ``param_names``."""
        name = self._names.get(id(p))
        if name is not None:
            return name
        names = self.optimizer.param_groups[g].get("param_names")
        if names is not None and i < len(names):
            return str(names[i])
        return self._unnamed(g, i, p)

    @staticmethod
    def _unnamed(g: int, i: int, p: torch.Tensor) -> str:
        return f"group {g}, param {i}, shape {tuple(p.shape)}"

    def _hook_steps(self) -> None:
        self._handles.append(self.optimizer.register_step_pre_hook(self._pre_step))
        self._handles.append(self.optimizer.register_step_post_hook(self._post_step))

    @abc.abstractmethod
    def _pre_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        """torch's step pre-hook: what to read before the step."""

    @abc.abstractmethod
    def _post_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        """torch's step post-hook: what to read after it."""

    def remove(self) -> None:
        """Detach every hook and free the meter's buffers; what was recorded stays."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._meter.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


@dataclass(frozen=True)
class Sample:
    """One sampled step of one param group (``param == ""``) or one tensor."""

    step: int  # the optimizer step measured (1: the first step)
    group: int
    param: str  # "" for the group's totals, else the parameter's name
    lr: float
    grad_norm: float  # ||g|| of the gradients the step read
    update_norm: float  # ||w_t - w_{t-1}||
    param_norm: float  # ||w_{t-1}||

    @property
    def ratio(self) -> float:
        """The update-to-weight ratio ``||w_t - w_{t-1}|| / ||w_{t-1}||`` (nan for w = 0)."""
        return self.update_norm / self.param_norm if self.param_norm > 0 else math.nan


FIELDS = ("lr", "grad_norm", "update_norm", "param_norm", "ratio")


@dataclass
class Telemetry(StepHooks):
    """The handle returned by :func:`telemetry`: ``history``, ``skipped_steps``,
    ``rows()``, ``series()``, ``to_tensorboard()``, ``remove()``; a context manager."""

    optimizer: torch.optim.Optimizer
    model: nn.Module | None = None
    every: int = 10
    per_tensor: bool = False
    on_sample: Callable[[list[Sample]], None] | None = None  # called with each step's samples
    history: list[Sample] = field(default_factory=list)
    steps: int = 0  # optimizer steps completed
    engine_samples: int = 0  # sampled steps measured inside descentlab's engines (no copy)
    _discarded: int = 0  # iterations whose gradients were reset without a step
    _found_inf: list[torch.Tensor] = field(default_factory=list, repr=False)
    _meter: UpdateMeter = field(default_factory=UpdateMeter, repr=False)
    _sampled: list[tuple[int, int, torch.Tensor]] = field(default_factory=list, repr=False)
    _grad_norms: list[float] = field(default_factory=list, repr=False)
    _handles: list[Any] = field(default_factory=list, repr=False)
    _names: dict[int, str] = field(default_factory=dict, repr=False)
    _probe: Any = field(default=None, repr=False)  # backward passes since the last step
    _skipped_before: int = field(default=0, repr=False)

    # -- attaching --------------------------------------------------------------------------

    def _attach(self) -> None:
        if self.model is not None:
            self._names = {id(p): name for name, p in self.model.named_parameters()}
        self._hook_steps()
        self._probe_discards()

    def _probe_discards(self) -> None:
        """Watch the smallest trainable parameter: gradients summed into it by a backward and
        then reset (``zero_grad``) before any optimizer step were discarded: a skipped step."""
        params = [
            p
            for group in self.optimizer.param_groups
            for p in group["params"]
            if p.requires_grad and p.is_leaf
        ]
        if not params:
            return
        param = min(params, key=lambda p: p.numel())
        ref = weakref.ref(param)
        passes = [0]  # backward passes since the last optimizer step
        last: list[Any] = [None, -1]  # the .grad after the last pass, and its version

        def before(incoming: torch.Tensor) -> None:
            p = ref()
            old = None if p is None else p.grad
            if passes[0] and (old is None or not (last[0] is old and old._version == last[1])):
                with torch.no_grad():
                    if old is None or not bool(old.any()):
                        self._discarded += 1
                        passes[0] = 0
            return None

        def after(p: torch.Tensor) -> None:
            passes[0] += 1
            last[0], last[1] = p.grad, (-1 if p.grad is None else p.grad._version)

        self._probe = passes
        self._handles.append(param.register_hook(before))
        self._handles.append(param.register_post_accumulate_grad_hook(after))

    # -- step hooks ---------------------------------------------------------------------------

    def _pre_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._skipped_before = getattr(optimizer, "skipped_steps", 0)
        if self.steps % self.every == 0:
            self._sampled = [
                (g, i, p)
                for g, group in enumerate(self.optimizer.param_groups)
                for i, p in enumerate(group["params"])
                if p.grad is not None
            ]
            if _engine_measures(optimizer):
                optimizer._measure = True
            else:
                self._grad_norms = norms([p.grad for _, _, p in self._sampled])  # type: ignore[misc]
                self._meter.begin([p for _, _, p in self._sampled])
        return None

    def _post_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.steps += 1
        if self._probe is not None:
            self._probe[0] = 0
        if getattr(optimizer, "skipped_steps", 0) != self._skipped_before:
            self._discarded += 1  # descentlab's skip_nonfinite skipped this step
        found_inf = getattr(optimizer, "found_inf", None)  # set by GradScaler on fused steps
        if isinstance(found_inf, torch.Tensor):
            self._found_inf.append((found_inf.detach().reshape(-1)[:1] > 0).to(torch.int64))
        if getattr(optimizer, "_measure", False):
            optimizer._measure = False
            update, before = self._from_engine(optimizer._update_stats)
            self.engine_samples += 1
        elif self._meter.active:
            update, before = self._meter.end()
        else:
            return
        samples = self._samples(update, before)
        self.history.extend(samples)
        if self.on_sample is not None:
            self.on_sample(samples)

    def _from_engine(self, stats: dict[int, torch.Tensor]) -> tuple[list[float], list[float]]:
        """Norms from the sums descentlab's engines computed inside the step: one host read
        per device. A parameter the step left alone (``skip_nonfinite``) moved by 0."""
        params = [p for _, _, p in self._sampled]
        missing = [p for p in params if id(p) not in stats]
        if missing:
            grads: list[torch.Tensor] = [p.grad for p in missing]  # type: ignore[misc]
            for p, w, g in zip(missing, norms(missing), norms(grads), strict=True):
                stats[id(p)] = torch.tensor([0.0, w * w, g * g], dtype=torch.float64)
        rows = [stats[id(p)] for p in params]
        by_device: dict[torch.device, list[int]] = {}
        for k, row in enumerate(rows):
            by_device.setdefault(row.device, []).append(k)
        sums: list[list[float]] = [[0.0, 0.0, 0.0]] * len(rows)
        for ks in by_device.values():
            table = torch.stack([rows[k].double() for k in ks]).tolist()
            for k, values in zip(ks, table, strict=True):
                sums[k] = values
        self._grad_norms = [math.sqrt(s[2]) for s in sums]
        return [math.sqrt(s[0]) for s in sums], [math.sqrt(s[1]) for s in sums]

    def _samples(self, update: list[float], before: list[float]) -> list[Sample]:
        rows: dict[int, list[int]] = {}
        for k, (g, _, _) in enumerate(self._sampled):
            rows.setdefault(g, []).append(k)
        out = []
        for g, ks in rows.items():
            lr = _as_float(self.optimizer.param_groups[g].get("lr", math.nan))
            out.append(
                Sample(
                    self.steps,
                    g,
                    "",
                    lr,
                    _total(self._grad_norms[k] for k in ks),
                    _total(update[k] for k in ks),
                    _total(before[k] for k in ks),
                )
            )
            if self.per_tensor:
                for k in ks:
                    _, i, p = self._sampled[k]
                    out.append(
                        Sample(
                            self.steps,
                            g,
                            self._name(g, i, p),
                            lr,
                            self._grad_norms[k],
                            update[k],
                            before[k],
                        )
                    )
        self._sampled = []
        return out

    @staticmethod
    def _unnamed(g: int, i: int, p: torch.Tensor) -> str:
        return f"group{g}.param{i}"  # a TensorBoard tag

    # -- reading ------------------------------------------------------------------------------

    @property
    def skipped_steps(self) -> int:
        """Skipped steps so far: iterations whose gradients were reset without a step, and
        steps that ``GradScaler`` told a fused optimizer to skip (read lazily: no sync per
        step)."""
        fused = int(torch.stack(self._found_inf).sum()) if self._found_inf else 0
        if len(self._found_inf) > 1:
            self._found_inf = [torch.tensor([fused])]
        return self._discarded + fused

    def rows(self) -> list[dict[str, Any]]:
        """The history as dicts (with ``ratio``), e.g. for ``pandas.DataFrame(tm.rows())``."""
        return [{**asdict(s), "ratio": s.ratio} for s in self.history]

    def series(self, key: str, group: int = 0, param: str = "") -> tuple[list[int], list[float]]:
        """(steps, values) of one quantity (``lr``, ``grad_norm``, ``update_norm``,
        ``param_norm`` or ``ratio``) for one group, or one tensor by name."""
        if key not in FIELDS:
            raise ValueError(
                f"unknown telemetry series {key!r}; choose one of: {', '.join(FIELDS)}"
            )
        picked = [s for s in self.history if s.group == group and s.param == param]
        return [s.step for s in picked], [float(getattr(s, key)) for s in picked]

    def to_tensorboard(self, target: Any, prefix: str = "optimizer") -> None:
        """Write the history as TensorBoard scalars through ``torch.utils.tensorboard``.

        ``target`` is a ``SummaryWriter`` or a log directory. Tags:
        ``<prefix>/group<g>/<quantity>`` for groups, ``<prefix>/<param name>/<quantity>`` per
        tensor, and ``<prefix>/skipped_steps`` at the last step. Non-finite values are skipped
        (TensorBoard cannot plot them).
        """
        from torch.utils.tensorboard import SummaryWriter

        own = not isinstance(target, SummaryWriter)
        writer = SummaryWriter(log_dir=os.fspath(target)) if own else target
        try:
            for s in self.history:
                where = s.param if s.param else f"group{s.group}"
                for key in FIELDS:
                    value = float(getattr(s, key))
                    if math.isfinite(value):
                        writer.add_scalar(f"{prefix}/{where}/{key}", value, s.step)
            writer.add_scalar(f"{prefix}/skipped_steps", self.skipped_steps, self.steps)
        finally:
            if own:
                writer.close()
            else:
                writer.flush()


def telemetry(
    optimizer: torch.optim.Optimizer,
    model: nn.Module | None = None,
    *,
    every: int = 10,
    per_tensor: bool = False,
    on_sample: Callable[[list[Sample]], None] | None = None,
) -> Telemetry:
    """Record what ``optimizer``'s steps do, every ``every`` steps; returns a
    :class:`Telemetry` handle.

    Args:
        optimizer: any ``torch.optim.Optimizer`` (descentlab's drop-ins included).
        model: names the tensors of ``per_tensor`` samples by module path.
        every: sample the 1st step and every ``every``-th after it (1: every step).
        per_tensor: also record every tensor's norms, not only each group's.
        on_sample: called with the samples of each sampled step, as soon as they are made
            (for live logging).
    """
    if not isinstance(every, int) or every < 1:
        raise ValueError(f"telemetry: every must be an integer >= 1, got {every!r}")
    handle = Telemetry(optimizer, model, every=every, per_tensor=per_tensor, on_sample=on_sample)
    handle._attach()
    return handle


def _engine_measures(optimizer: torch.optim.Optimizer) -> bool:
    """Whether the optimizer's own engines measure a step (descentlab's, but for the flat
    engines, which step whole buffers): then no copy of the parameters is made."""
    from .torch import Optimizer

    return isinstance(optimizer, Optimizer) and optimizer.engine not in ("flat", "flat-eager")


def _as_float(value: Any) -> float:
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value)
