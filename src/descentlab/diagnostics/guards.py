"""An opt-in guard that reports training-loop pitfalls while the loop runs.

:func:`guard` attaches to any ``torch.optim`` optimizer (descentlab's drop-ins included)
through torch's per-optimizer step hooks and per-parameter gradient hooks. It only reads:
parameters, gradients and optimizer state are never written, and the guarded run is
bit-identical to the unguarded one. Each pitfall is reported once per optimizer (one finding
per problem, naming the first parameter and how many more), as a :class:`PitfallWarning`
whose one-line message names the parameter, the measured figure and the fix, and is kept as
a :class:`Finding` in :attr:`Guard.findings`.

What it catches (``kind`` of the finding):

* ``"grad_accumulation"`` - a step reads a ``.grad`` that still holds the gradient of a
  previous step (``zero_grad`` forgotten);
* ``"zeroed_before_step"`` - backward passes reached the parameters since the last step,
  but every gradient is ``None`` or zero when the step runs (``zero_grad()`` called between
  ``backward()`` and ``step()``: nothing trains);
* ``"coupled_weight_decay"`` - an adaptive optimizer (Adam, RMSprop...) with L2
  ``weight_decay``: the decay is divided by the adaptive denominator; use AdamW;
* ``"nonfinite_grad"`` - a gradient holding a NaN or an infinity;
* ``"finetuning_lr"`` - weights that hold learned values (loaded from a checkpoint or
  trained by an earlier optimizer: :mod:`.provenance`), moved by a fresh optimizer by more
  than ``max_update_ratio`` of their norm in one of its first steps, or by more than
  ``max_drift`` of it within its first ``finetuning_window`` steps (a warmup included);
* ``"eps_underflow"`` - a 16-bit parameter whose ``eps`` rounds to zero in its dtype;
* ``"second_moment_underflow"`` - float16 parameters whose running mean of squared
  gradients is 0 where the gradient is not (steps of m/eps);
* ``"lr_jump"`` - the lr of a group changed by ``lr_jump`` times or more between two steps,
  in an optimizer that keeps the lr inside its velocity (none of torch.optim's does).

Advice, kept apart in :attr:`Guard.advice` and never warned: ``"decay_on_bias_or_norm"``
(weight decay on biases and normalization weights: the usual recipe leaves them out, but a
small decay there rarely matters and is not one of the seed's pitfalls).

Example:
    >>> import torch, warnings
    >>> from descentlab import guard
    >>> model = torch.nn.Linear(3, 1)
    >>> opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     g = guard(opt, model)
    >>> print(caught[0].message)  # doctest: +ELLIPSIS
    coupled_weight_decay after 0 steps: group 0 (Adam, 2 params, first weight): ...
    >>> [f.kind for f in g.findings], [a.kind for a in g.advice], len(caught)
    (['coupled_weight_decay'], ['decay_on_bias_or_norm'], 1)
    >>> g.remove()
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..engines.policy import is_low_precision
from . import provenance
from .hooks import (
    SECOND_MOMENTS,
    UNDERFLOW_FIX,
    UNDERFLOW_SHARE,
    StepHooks,
    UpdateMeter,
    as_float,
    moment_underflow,
    norms,
)
from .weight_decay import decay_split, norm_params
from .zero_grad import ZeroGradDetector

__all__ = ["SECOND_MOMENTS", "UNDERFLOW_SHARE", "Finding", "Guard", "PitfallWarning", "guard"]

# Karpathy's "update/data ratio" rule of thumb (CS231n notes, "Neural Networks Part 3":
# ratio of the update magnitudes to the value magnitudes) is ~1e-3 per step. Adam's first
# steps move every element by about lr, so the ratio is about lr / rms(w). Pretrained
# transformer weights have rms ~0.02-0.03 (initialised with std 0.02), so Adam's default
# 1e-3 gives 0.03-0.05 per step on them: 30-50x the rule of thumb, the fine-tuning pitfall,
# which wipes out pretrained weights within a few hundred steps. From scratch the same steps
# are normal (the lab's MLPs and CNNs reach 0.03-0.2 at their best lrs and train well), so
# the ratio is only watched on weights that hold learned values (:mod:`.provenance`).
MAX_UPDATE_RATIO = 3e-2
# The number of first steps whose update ratio is measured (a copy of each watched weight
# tensor is kept during those steps only).
RATIO_STEPS = 3
# A warmup hides a destructive peak lr from the first steps, so the whole early phase is
# watched too: the distance ||w_t - w_0|| / ||w_0|| every DRIFT_EVERY steps for the first
# FINETUNING_WINDOW steps (one copy of the watched tensors is kept for that long). Fine-tuning
# at a sound lr moves learned weights by a few percent there; a destructive one by their
# whole norm (measured on the check corpus: see tests/check_corpus).
MAX_DRIFT = 0.5
FINETUNING_WINDOW = 200
DRIFT_EVERY = 10
LR_JUMP = 10.0
ADVICE = frozenset({"decay_on_bias_or_norm"})
"""Kinds that are advice, not pitfalls: kept in ``Guard.advice``, never warned."""

_ADAPTIVE = {"Adam", "Adamax", "NAdam", "RAdam", "RMSprop", "Adagrad", "Adadelta"}
# Frames skipped to point a warning at the user's call: this package (the guard, its hooks,
# and ``descentlab check``'s attachment) and torch (its step wrapper and hooks).
_SKIP_FRAMES = (
    str(Path(__file__).resolve().parent) + os.sep,
    str(Path(torch.__file__).resolve().parent),
)


class PitfallWarning(UserWarning):
    """A training-loop pitfall found by :func:`guard`."""


@dataclass(frozen=True)
class Finding:
    """One pitfall: what, where, the measured figure, and the fix."""

    kind: str
    param: str
    figure: float
    detail: str
    fix: str
    step: int  # optimizer steps completed when it was found (0: at attach time)
    advice: bool = False  # advice, not a pitfall (``ADVICE``): never warned

    @property
    def message(self) -> str:
        """The one-line message of the warning."""
        return f"{self.kind} after {self.step} steps: {self.param}: {self.detail}; fix: {self.fix}"


@dataclass
class Guard(StepHooks):
    """The handle returned by :func:`guard`: ``findings``, ``advice``, ``remove()``; a
    context manager."""

    watched: InitVar[torch.optim.Optimizer]  # kept weakly: the ``optimizer`` property
    model: nn.Module | None = None
    accumulation_steps: int = 1
    max_update_ratio: float | None = MAX_UPDATE_RATIO
    lr_jump: float | None = LR_JUMP
    check_every: int = 1
    ratio_steps: int = RATIO_STEPS
    finetuning: bool | None = None
    max_drift: float | None = MAX_DRIFT
    finetuning_window: int = FINETUNING_WINDOW
    findings: list[Finding] = field(default_factory=list)
    advice: list[Finding] = field(default_factory=list)
    steps: int = 0
    on_finding: Callable[[Finding], None] | None = None  # called with each new finding
    warn: bool = True  # each finding is also a PitfallWarning
    _handles: list[Any] = field(default_factory=list, repr=False)
    _tracks: dict[int, ZeroGradDetector] = field(default_factory=dict, repr=False)
    _names: dict[int, str] = field(default_factory=dict, repr=False)
    _reported: set[str] = field(default_factory=set, repr=False)
    _settings: list[tuple[Any, ...]] = field(default_factory=list, repr=False)
    _meter: UpdateMeter = field(default_factory=UpdateMeter, repr=False)
    _measured: list[tuple[int, int, torch.Tensor]] = field(default_factory=list, repr=False)
    _lrs: list[float] = field(default_factory=list, repr=False)
    _norm_params: set[int] = field(default_factory=set, repr=False)
    _training: provenance.Training = field(default_factory=provenance.Training, repr=False)
    _learned: dict[int, str] = field(default_factory=dict, repr=False)  # id -> why learned
    _origins: list[tuple[int, int, torch.Tensor, torch.Tensor]] = field(
        default_factory=list, repr=False
    )  # (group, index, param, its value at the first step) while the early phase lasts

    def __post_init__(self, watched: torch.optim.Optimizer) -> None:
        self._watch(watched)

    # -- attaching --------------------------------------------------------------------------

    def _attach(self) -> None:
        if self.model is not None:
            self._names = {id(p): name for name, p in self.model.named_parameters()}
            self._norm_params = norm_params(self.model)
        self._hook_steps()
        self._track_new_params()
        self._check_settings()

    def _params(self) -> list[tuple[int, int, torch.Tensor]]:
        return [
            (g, i, p)
            for g, group in enumerate(self.optimizer.param_groups)
            for i, p in enumerate(group["params"])
        ]

    def _track_new_params(self) -> None:
        for _, _, p in self._params():
            if id(p) in self._tracks or not p.requires_grad or not p.is_leaf:
                continue
            detector = self._tracks[id(p)] = ZeroGradDetector(p)
            self._handles.append(detector)  # removed with the step hooks

    # -- gradient accumulation ---------------------------------------------------------------

    def _check_accumulation(self) -> None:
        offenders = []
        for g, i, p in self._params():
            track = self._tracks.get(id(p))
            if track is None or p.grad is None:
                continue
            carried = track.since_reset > track.since_step
            if carried and track.since_reset > self.accumulation_steps:
                offenders.append((self._name(g, i, p), track))
        if offenders:
            name, track = offenders[0]
            more = _more(len(offenders) - 1, "parameters")
            self._report(
                "grad_accumulation",
                name,
                track.since_reset,
                f".grad sums {track.since_reset} backward passes{more}, "
                f"{track.since_reset - track.since_step} of them already applied by an "
                f"earlier step (accumulation_steps={self.accumulation_steps})",
                "call optimizer.zero_grad() after each optimizer.step() (once per "
                "accumulation_steps micro-batches when accumulating)",
            )

    # -- settings: weight decay, eps, lr -----------------------------------------------------

    def _check_settings(self) -> None:
        settings = [
            (
                as_float(group.get("weight_decay", 0.0)),
                bool(group.get("decoupled_weight_decay", False)),
                group.get("eps"),
                tuple(map(id, group["params"])),
            )
            for group in self.optimizer.param_groups
        ]
        if settings == self._settings:
            return
        self._settings = settings
        adaptive = any(c.__name__ in _ADAPTIVE for c in type(self.optimizer).__mro__)
        computes_in_fp32 = _descentlab_optimizer(self.optimizer)
        for g, group in enumerate(self.optimizer.param_groups):
            params = group["params"]
            decay = as_float(group.get("weight_decay", 0.0))
            if not params:
                continue
            if adaptive and decay > 0 and not group.get("decoupled_weight_decay", False):
                self._report(
                    "coupled_weight_decay",
                    f"group {g} ({type(self.optimizer).__name__}, {len(params)} params, "
                    f"first {self._name(g, 0, params[0])})",
                    decay,
                    f"weight_decay={decay:g} is L2 added to the gradient, so the adaptive "
                    "denominator scales it down for weights with large gradients",
                    "use AdamW (torch.optim.AdamW or descentlab.torch.AdamW), or "
                    "decoupled_weight_decay=True where the optimizer offers it",
                )
            if decay > 0:
                everything = [q for group in self.optimizer.param_groups for q in group["params"]]
                flat = [(i, p) for i, p in enumerate(params) if self._no_decay(p, everything)]
                if flat:
                    i, p = flat[0]
                    self._report(
                        "decay_on_bias_or_norm",
                        self._name(g, i, p),
                        decay,
                        f"weight_decay={decay:g} shrinks {len(flat)} bias/normalization "
                        f"parameter(s) of group {g} towards 0",
                        "put them in a group with weight_decay=0: "
                        "descentlab.param_groups_for_decay(model, weight_decay)",
                        advice=True,
                    )
            eps = group.get("eps")
            if isinstance(eps, (int, float)) and eps > 0 and not computes_in_fp32:
                if group.get("fused"):
                    continue  # fused kernels compute in float32
                for i, p in enumerate(params):
                    if is_low_precision(p.dtype) and torch.tensor(eps, dtype=p.dtype).item() == 0:
                        self._report(
                            "eps_underflow",
                            self._name(g, i, p),
                            float(eps),
                            f"eps={eps:g} rounds to 0 in {str(p.dtype)[6:]}, so a zero "
                            "second moment divides by zero",
                            "keep float32 master weights (torch.autocast + GradScaler), "
                            "use eps>=1e-4 in float16, or descentlab.torch's optimizers "
                            "(float32 arithmetic)",
                        )
                        break

    def _check_lr(self) -> None:
        lrs = [as_float(group.get("lr", 0.0)) for group in self.optimizer.param_groups]
        inside = bool(getattr(self.optimizer, "lr_inside_velocity", False))
        if self.lr_jump is not None and inside and len(lrs) == len(self._lrs):
            for g, (old, new) in enumerate(zip(self._lrs, lrs, strict=True)):
                if old > 0 and new > 0 and max(new / old, old / new) >= self.lr_jump:
                    self._report(
                        "lr_jump",
                        f"group {g}",
                        new / old,
                        f"lr changed from {old:g} to {new:g} while the velocity still "
                        "carries the old lr",
                        "change the lr gradually (warmup/decay schedule) or rescale the "
                        "velocity by new_lr/old_lr",
                    )
        self._lrs = lrs

    # -- step hooks ---------------------------------------------------------------------------

    def _pre_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._track_new_params()
        self._check_settings()
        self._check_lr()
        self._check_accumulation()
        self._check_zeroed()
        if self.steps == 0:
            self._begin_early_phase()
        if self.check_every > 0 and self.steps % self.check_every == 0:
            self._check_finite()
        if self.max_update_ratio is not None and self._learned and self.steps < self.ratio_steps:
            self._measured = [
                (g, i, p) for g, i, p in self._params() if p.grad is not None and self._watched(p)
            ]
            self._meter.begin([p for _, _, p in self._measured])
        return None

    def _post_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self._meter.active:
            self._check_ratio()
        if self.check_every > 0 and self.steps % self.check_every == 0:
            self._check_second_moment()
        if self.steps + 1 >= self.ratio_steps:
            self._meter.clear()  # the copies are needed during the first steps only
        for detector in self._tracks.values():
            detector.step_taken()
        self.steps += 1
        self._training.steps = self.steps
        if self._origins and (
            self.steps % DRIFT_EVERY == 0 or self.steps >= self.finetuning_window
        ):
            self._check_drift()

    # -- zero_grad between backward and step ------------------------------------------------

    def _check_zeroed(self) -> None:
        """Backward passes reached parameters since the last step, yet every one of them has
        a ``None`` or all-zero gradient now: the gradients were reset before the step."""
        reached = [
            (g, i, p, track.at_step())
            for g, i, p in self._params()
            if (track := self._tracks.get(id(p))) is not None
        ]
        reached = [r for r in reached if r[3] != "none"]
        if not reached or any(state == "kept" for *_, state in reached):
            return
        touched = [
            p.grad for _, _, p, state in reached if state == "touched" and p.grad is not None
        ]
        if touched and any(_any_nonzero(touched)):
            return
        g, i, p, _ = reached[0]
        more = _more(len(reached) - 1, "parameters")
        self._report(
            "zeroed_before_step",
            self._name(g, i, p),
            len(reached),
            f"backward() reached it since the last step, but its gradient is "
            f"{'None' if p.grad is None else 'zero'} as the step runs{more}: nothing trains",
            "call optimizer.zero_grad() before loss.backward() (or after optimizer.step()), "
            "never between backward() and step()",
        )

    # -- fine-tuning: learned weights moved too far ------------------------------------------

    def _begin_early_phase(self) -> None:
        """At the first step: which weight tensors hold learned values (watched), a copy of
        them for the drift, and this optimizer noted as the one that now trains them. A
        resumed run (optimizer state loaded) is not a fresh start: nothing is watched."""
        params = [(g, i, p) for g, i, p in self._params() if p.requires_grad]
        resumed = any(self.optimizer.state.get(p) for _, _, p in params)
        self._learned = {}
        if self.finetuning is not False and not resumed:
            for _, _, p in params:
                if p.dim() < 2:
                    continue  # biases and norms: their scale says little
                why = "finetuning=True" if self.finetuning else provenance.learned(p)
                if why is not None:
                    self._learned[id(p)] = why
        provenance.claim([p for _, _, p in params], self._training)
        if self.max_drift is not None and self.finetuning_window > 0:
            with torch.no_grad():
                self._origins = [
                    (g, i, p, p.detach().clone()) for g, i, p in params if self._watched(p)
                ]

    def _check_drift(self) -> None:
        assert self.max_drift is not None
        origins, self._origins = self._origins, []
        with torch.no_grad():
            start = [w0 for *_, w0 in origins]
            size = norms(start)
            moved = norms(torch._foreach_sub([p.detach() for _, _, p, _ in origins], start))
        far = _above(moved, size, self.max_drift)
        if far:
            drift, k = max(far)
            g, i, p, _ = origins[k]
            more = _more(len(far) - 1, "tensors")
            self._report(
                "finetuning_lr",
                self._name(g, i, p),
                drift,
                f"||w - w0||/||w0|| = {drift:.3g} > {self.max_drift:g} after {self.steps} "
                f"steps of this optimizer{more}: learned weights ({self._learned[id(p)]}) "
                "are being overwritten",
                _FINETUNING_FIX,
            )
        elif self.steps < self.finetuning_window:
            self._origins = origins  # keep watching the early phase

    def _check_finite(self) -> None:
        grads = [
            (g, i, p, p.grad)
            for g, i, p in self._params()
            if p.grad is not None and not p.grad.is_sparse
        ]
        by_device: dict[torch.device, list[int]] = {}
        for k, (*_, grad) in enumerate(grads):
            by_device.setdefault(grad.device, []).append(k)
        bad: list[int] = []
        with torch.no_grad():  # one reduction and one read per device
            for ks in by_device.values():
                finite = torch.stack([torch.isfinite(grads[k][3]).all() for k in ks])
                if not bool(finite.all()):
                    bad.extend(k for k, ok in zip(ks, finite.tolist(), strict=True) if not ok)
        if bad:
            g, i, p, grad = grads[min(bad)]  # the first offending parameter
            count = int((~torch.isfinite(grad)).sum())
            self._report(
                "nonfinite_grad",
                self._name(g, i, p),
                count,
                f"{count} of {grad.numel()} gradient elements are NaN or infinite",
                "lower the lr, clip gradients (torch.nn.utils.clip_grad_norm_), look for "
                "log(0) or x/0 in the loss; under float16 use torch.amp.GradScaler",
            )

    def _check_second_moment(self) -> None:
        """float16 parameters whose running mean of squared gradients underflows to 0 where
        the gradient is not 0 (:func:`~.hooks.moment_underflow`): steps of m / eps."""
        params = self._params()
        counts = moment_underflow(self.optimizer, [p for _, _, p in params])
        offenders = [
            (g, i, p, lost, moving)
            for (g, i, p), (lost, moving) in zip(params, counts, strict=True)
            if moving and lost > UNDERFLOW_SHARE * moving
        ]
        if offenders:
            g, i, p, lost, moving = offenders[0]
            more = _more(len(offenders) - 1, "parameters")
            self._report(
                "second_moment_underflow",
                self._name(g, i, p),
                lost / moving,
                f"the float16 mean of squared gradients is 0 for {lost} of {moving} weights "
                f"with a gradient{more}: their steps become m/eps, far too large",
                UNDERFLOW_FIX,
            )

    def _check_ratio(self) -> None:
        assert self.max_update_ratio is not None
        update, before = self._meter.end()
        high = _above(update, before, self.max_update_ratio)
        if high:
            ratio, k = max(high)
            g, i, p = self._measured[k]
            more = _more(len(high) - 1, "tensors")
            self._report(
                "finetuning_lr",
                self._name(g, i, p),
                ratio,
                f"||dw||/||w|| = {ratio:.3g} > {self.max_update_ratio:g} at step "
                f"{self.steps + 1}{more} on learned weights ({self._learned[id(p)]}); rule "
                "of thumb ~1e-3",
                _FINETUNING_FIX,
            )
        self._measured = []

    # -- reporting ----------------------------------------------------------------------------

    def _watched(self, p: torch.Tensor) -> bool:
        """Is ``p`` a weight tensor holding learned values, whose steps are measured?"""
        return id(p) in self._learned

    def _no_decay(self, p: torch.Tensor, params: list[torch.Tensor]) -> bool:
        return any(q is p for q in decay_split(params, self._norm_params)[1])

    def _report(
        self, kind: str, param: str, figure: float, detail: str, fix: str, advice: bool = False
    ) -> None:
        if kind in self._reported:
            return  # one finding per problem
        self._reported.add(kind)
        finding = Finding(kind, param, float(figure), detail, fix, self.steps, advice)
        (self.advice if advice else self.findings).append(finding)
        if self.on_finding is not None:
            self.on_finding(finding)
        if self.warn and not advice:
            warnings.warn(finding.message, PitfallWarning, stacklevel=_user_stacklevel())


def guard(
    optimizer: torch.optim.Optimizer,
    model: nn.Module | None = None,
    *,
    accumulation_steps: int = 1,
    max_update_ratio: float | None = MAX_UPDATE_RATIO,
    lr_jump: float | None = LR_JUMP,
    check_every: int = 1,
    ratio_steps: int = RATIO_STEPS,
    finetuning: bool | None = None,
    max_drift: float | None = MAX_DRIFT,
    finetuning_window: int = FINETUNING_WINDOW,
    warn: bool = True,
) -> Guard:
    """Watch ``optimizer`` for training-loop pitfalls; returns a :class:`Guard`.

    Args:
        optimizer: any ``torch.optim.Optimizer`` (descentlab's drop-ins included).
        model: names parameters by module path and recognises normalization layers.
        accumulation_steps: backward passes one step may sum (gradient accumulation).
        max_update_ratio: ``||dw|| / ||w||`` of a learned weight tensor above which one of
            the first ``ratio_steps`` steps is reported (default ``MAX_UPDATE_RATIO`` = 3e-2,
            30 times the ~1e-3 rule of thumb; its source is noted there); ``None``: off.
        lr_jump: factor of lr change between two steps reported for optimizers that keep the
            lr inside the velocity (those with ``lr_inside_velocity = True``; torch.optim and
            descentlab apply a new lr at once, so they are never reported); ``None`` disables.
        check_every: scan gradients for NaN/inf every this many steps (0 disables).
        ratio_steps: how many first steps measure the update ratio.
        finetuning: which weight tensors (2-D and up) hold learned values, whose early
            steps are watched. ``None`` (default): those with evidence
            (:func:`~descentlab.diagnostics.provenance.learned`: trained by an earlier
            guarded optimizer of this process, or loaded by ``load_state_dict`` with values
            this process never saw untrained; loads are seen under ``descentlab check``, or
            after :func:`~descentlab.diagnostics.provenance.watch_loads`); an optimizer
            whose state was loaded (a resumed run) watches none. ``True``: every weight
            tensor (you adapt trained weights). ``False``: none. From scratch large first
            steps are harmless, so fresh weights are never watched.
        max_drift: ``||w_t - w_0|| / ||w_0||`` of a learned weight tensor above which the
            early phase (the first ``finetuning_window`` steps, read every ``DRIFT_EVERY``
            steps) is reported: a warmup hides a destructive peak lr from the first steps;
            ``None``: off. One copy of the learned tensors is kept during that phase.
        warn: give each finding as a :class:`PitfallWarning` too (``descentlab check``
            turns this off: it reports the findings at the end, and a script run with
            ``-W error`` must not die of a warning it never asked for).

    Settings (weight decay, eps, dtypes) are checked at once and again when a group changes.
    """
    if accumulation_steps < 1:
        raise ValueError(f"guard: accumulation_steps must be >= 1, got {accumulation_steps}")
    if check_every < 0:
        raise ValueError(f"guard: check_every must be >= 0, got {check_every}")
    handle = Guard(
        optimizer,
        model,
        accumulation_steps=accumulation_steps,
        max_update_ratio=max_update_ratio,
        lr_jump=lr_jump,
        check_every=check_every,
        ratio_steps=ratio_steps,
        finetuning=finetuning,
        max_drift=max_drift,
        finetuning_window=finetuning_window,
        warn=warn,
    )
    handle._attach()
    return handle


_FINETUNING_FIX = (
    "lower the lr for the learned weights (fine-tuning: 1e-5..1e-4 with Adam, ~10x below the "
    "pretraining lr), including the warmup's peak; a new head may have its own param group "
    "with a larger lr"
)


def _above(num: list[float], den: list[float], limit: float) -> list[tuple[float, int]]:
    """``(num[k] / den[k], k)`` for each tensor whose ratio exceeds ``limit`` (a zero or
    non-finite ``den`` says nothing)."""
    return [
        (n / d, k)
        for k, (n, d) in enumerate(zip(num, den, strict=True))
        if 0 < d < math.inf and n / d > limit
    ]


def _more(n: int, what: str) -> str:
    """`` (and 3 more tensors)``, or nothing."""
    return f" (and {n} more {what})" if n > 0 else ""


def _any_nonzero(tensors: list[torch.Tensor]) -> list[bool]:
    """Whether each tensor holds a non-zero element: one read per device."""
    by_device: dict[torch.device, list[int]] = {}
    for k, t in enumerate(tensors):
        by_device.setdefault(t.device, []).append(k)
    out = [False] * len(tensors)
    with torch.no_grad():
        for ks in by_device.values():
            flags = torch.stack([tensors[k].any() for k in ks]).tolist()
            for k, flag in zip(ks, flags, strict=True):
                out[k] = bool(flag)
    return out


def _descentlab_optimizer(optimizer: torch.optim.Optimizer) -> bool:
    from ..torch import RuleOptimizer

    return isinstance(optimizer, RuleOptimizer)


def _user_stacklevel() -> int:
    """The stacklevel of the first frame outside this package and torch (the user's call)."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_SKIP_FRAMES):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level
