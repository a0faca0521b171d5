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
a norm of the gradients; other steps cost two Python hook calls. descentlab's drop-ins
(but for the flat engines) measure a sampled step inside their engines instead, with no
copy (:meth:`descentlab.torch.RuleOptimizer.measure_next_step`). ``descentlab bench`` measures
the overhead at ``every=10`` on the GPT-like layout.

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

import math
import os
import warnings
from collections.abc import Callable
from dataclasses import InitVar, asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from .guards import PitfallWarning
from .hooks import (
    UNDERFLOW_FIX,
    UNDERFLOW_SHARE,
    StepHooks,
    UpdateMeter,
    as_float,
    moment_underflow,
    norms,
    total,
)
from .zero_grad import ZeroGradDetector

__all__ = ["FIELDS", "Sample", "Telemetry", "telemetry"]


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
    # share of the weights with a gradient whose float16 mean of squared gradients is 0
    # (it underflowed: their steps are m/eps); 0 for other dtypes and optimizers
    moment_underflow: float = 0.0

    @property
    def ratio(self) -> float:
        """The update-to-weight ratio ``||w_t - w_{t-1}|| / ||w_{t-1}||`` (nan for w = 0)."""
        return self.update_norm / self.param_norm if self.param_norm > 0 else math.nan


FIELDS = ("lr", "grad_norm", "update_norm", "param_norm", "ratio", "moment_underflow")


@dataclass
class Telemetry(StepHooks):
    """The handle returned by :func:`telemetry`: ``history``, ``skipped_steps``,
    ``rows()``, ``series()``, ``to_tensorboard()``, ``remove()``; a context manager."""

    watched: InitVar[torch.optim.Optimizer]  # kept weakly: the ``optimizer`` property
    model: nn.Module | None = None
    every: int = 10
    per_tensor: bool = False
    on_sample: Callable[[list[Sample]], None] | None = None  # called with each step's samples
    history: list[Sample] = field(default_factory=list)
    steps: int = 0  # optimizer steps completed
    engine_samples: int = 0  # sampled steps measured inside descentlab's engines (no copy)
    _discarded: int = 0  # steps that descentlab's skip_nonfinite skipped
    _found_inf: list[torch.Tensor] = field(default_factory=list, repr=False)
    _meter: UpdateMeter = field(default_factory=UpdateMeter, repr=False)
    _sampled: list[tuple[int, int, torch.Tensor]] = field(default_factory=list, repr=False)
    _grad_norms: list[float] = field(default_factory=list, repr=False)
    _handles: list[Any] = field(default_factory=list, repr=False)
    _names: dict[int, str] = field(default_factory=dict, repr=False)
    _probe: ZeroGradDetector | None = field(default=None, repr=False)  # see _probe_discards
    _skipped_before: int = field(default=0, repr=False)
    _underflow: list[tuple[int, int]] = field(default_factory=list, repr=False)
    _warned: bool = field(default=False, repr=False)

    def __post_init__(self, watched: torch.optim.Optimizer) -> None:
        self._watch(watched)

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
        self._probe = ZeroGradDetector(param, lazy=True)  # no read right after a step
        self._handles.append(self._probe)  # removed with the step hooks

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
            if not _measure_inside(optimizer):
                self._grad_norms = norms([p.grad for _, _, p in self._sampled])  # type: ignore[misc]
                self._meter.begin([p for _, _, p in self._sampled])
        return None

    def _post_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.steps += 1
        if self._probe is not None:
            self._probe.step_taken()
        if getattr(optimizer, "skipped_steps", 0) != self._skipped_before:
            self._discarded += 1  # descentlab's skip_nonfinite skipped this step
        found_inf = getattr(optimizer, "found_inf", None)  # set by GradScaler on fused steps
        if isinstance(found_inf, torch.Tensor):
            self._found_inf.append((found_inf.detach().reshape(-1)[:1] > 0).to(torch.int64))
        measured = _measurements_inside(optimizer)
        if measured is not None:
            update, before = self._from_engine(measured)
            self.engine_samples += 1
        elif self._meter.active:
            update, before = self._meter.end()
        else:
            return
        self._underflow = moment_underflow(optimizer, [p for _, _, p in self._sampled])
        samples = self._samples(update, before)
        self._warn_underflow(samples)
        self.history.extend(samples)
        if self.on_sample is not None:
            self.on_sample(samples)

    def _from_engine(self, stats: dict[int, torch.Tensor]) -> tuple[list[float], list[float]]:
        """Norms from the sums descentlab's engines computed inside the step: one host read
        per device. A parameter the step left alone (``skip_nonfinite``) moved by 0."""
        stats = dict(stats)
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
            lr = as_float(self.optimizer.param_groups[g].get("lr", math.nan))
            out.append(
                Sample(
                    self.steps,
                    g,
                    "",
                    lr,
                    total(self._grad_norms[k] for k in ks),
                    total(update[k] for k in ks),
                    total(before[k] for k in ks),
                    self._share(ks),
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
                            self._share([k]),
                        )
                    )
        self._sampled = []
        return out

    def _share(self, ks: list[int]) -> float:
        """The share of moving weights (tensors ``ks`` of this sample) whose float16 second
        moment is 0."""
        lost = sum(self._underflow[k][0] for k in ks) if self._underflow else 0
        moving = sum(self._underflow[k][1] for k in ks) if self._underflow else 0
        return lost / moving if moving else 0.0

    def _warn_underflow(self, samples: list[Sample]) -> None:
        worst = max(samples, key=lambda s: s.moment_underflow, default=None)
        if self._warned or worst is None or worst.moment_underflow <= UNDERFLOW_SHARE:
            return
        self._warned = True
        warnings.warn(
            f"telemetry, step {worst.step}, group {worst.group}: the float16 mean of squared "
            f"gradients is 0 for {worst.moment_underflow:.0%} of the weights with a gradient "
            f"(their steps become m/eps, far too large); fix: {UNDERFLOW_FIX}",
            PitfallWarning,
            stacklevel=2,
        )

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
        discards = 0 if self._probe is None else self._probe.discards
        return self._discarded + discards + fused

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


def _measure_inside(optimizer: torch.optim.Optimizer) -> bool:
    """Ask descentlab's drop-ins to measure the next step inside their engines (all but the
    flat engines, which step whole buffers): then no copy of the parameters is made."""
    from ..torch import RuleOptimizer

    return isinstance(optimizer, RuleOptimizer) and optimizer.measure_next_step()


def _measurements_inside(optimizer: torch.optim.Optimizer) -> dict[int, torch.Tensor] | None:
    """What the step :func:`_measure_inside` asked for measured (None: nothing asked)."""
    from ..torch import RuleOptimizer

    return optimizer.take_step_measurements() if isinstance(optimizer, RuleOptimizer) else None
