"""What the guard and telemetry share: step hooks, the update meter, norms, parameter names.

Both watch an optimizer from the outside, through torch's step hooks, and both measure a
step by the norms of ``w_t - w_{t-1}`` and ``w_{t-1}``; both name a parameter by its module
path. Written here once, so that a fix to a norm or a name reaches both.

Example:
    >>> import torch
    >>> meter = UpdateMeter()
    >>> w = torch.ones(4)
    >>> meter.begin([w])
    >>> _ = w.add_(0.5)
    >>> meter.end()  # (update norms, weight norms before the step)
    ([1.0], [2.0])
    >>> total([3.0, 4.0])
    5.0
"""

from __future__ import annotations

import abc
import math
import weakref
from collections.abc import Iterable, Sequence
from typing import Any, Self

import torch

from ..engines.policy import is_low_precision

__all__ = [
    "SECOND_MOMENTS",
    "UNDERFLOW_FIX",
    "UNDERFLOW_SHARE",
    "StepHooks",
    "UpdateMeter",
    "as_float",
    "moment_underflow",
    "norms",
    "total",
]

# The state keys of torch.optim's running means of squared gradients (Adam's family,
# RMSprop and Adadelta; Adagrad's sum), and the share of a float16 tensor's moving weights
# whose mean may be 0 before it is reported: a few exact zeros are chance, 1% is underflow.
SECOND_MOMENTS = ("exp_avg_sq", "square_avg", "sum")
UNDERFLOW_SHARE = 0.01
UNDERFLOW_FIX = (
    "keep float32 master weights (a float32 model under torch.autocast with "
    "torch.amp.GradScaler), or train in bfloat16 (float32's range)"
)


def moment_underflow(
    optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor]
) -> list[tuple[int, int]]:
    """Per parameter, ``(lost, moving)``: of the weights with a non-zero gradient, how many
    have a float16 running mean of squared gradients (kept in float16, as torch.optim keeps
    it) that is exactly 0. g**2 underflows float16 below |g| = 2.4e-4, ordinary gradients;
    the step there is m / eps, far too large, and no NaN stops the run. ``(0, 0)`` for other
    dtypes and for optimizers without such a mean."""
    out = []
    with torch.no_grad():
        for p in params:
            grad = p.grad
            state = optimizer.state.get(p, {})
            v = next((state[k] for k in SECOND_MOMENTS if k in state), None)
            if (
                p.dtype != torch.float16
                or grad is None
                or grad.is_sparse
                or not isinstance(v, torch.Tensor)
                or v.shape != grad.shape
            ):
                out.append((0, 0))
                continue
            nonzero = grad != 0
            out.append((int((nonzero & (v == 0)).sum()), int(nonzero.sum())))
    return out


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
                wide = torch.float32 if is_low_precision(dtype) else None
                values = list(torch._foreach_norm([tensors[k] for k in ks], 2, dtype=wide))
            slot = by_device.setdefault(device, ([], []))
            slot[0].extend(ks)
            slot[1].append(torch.stack(values).double())
        for ks, parts in by_device.values():
            for k, v in zip(ks, torch.cat(parts).tolist(), strict=True):
                out[k] = float(v)
    return out


def total(values: Iterable[float]) -> float:
    """The norm of several tensors from their norms: ``sqrt(sum(v ** 2))`` (a group's norm
    from its parameters'), summed in this order so every caller gets the same bits."""
    return math.sqrt(sum(v * v for v in values))


def as_float(value: Any) -> float:
    """A hyperparameter as a Python float (a param group may hold a tensor lr)."""
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value)


class UpdateMeter:
    """Measures ``||w_t - w_{t-1}||`` and ``||w_{t-1}||`` of a list of tensors over a step.

    ``begin(params)`` copies them into buffers kept for the next time (allocated once per
    tensor); ``end()`` returns the norms of the differences and of the copies. Shared by
    :func:`~descentlab.diagnostics.telemetry.telemetry` and
    :func:`~descentlab.diagnostics.guards.guard`'s update-ratio check.
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
    """What telemetry and the guard share: step hooks on an optimizer and an
    :class:`UpdateMeter`, removed together by ``remove()``; a context manager."""

    _optimizer: weakref.ref[torch.optim.Optimizer]
    _handles: list[Any]
    _meter: UpdateMeter
    _names: dict[int, str]  # id(param) -> its name in the model

    def _watch(self, optimizer: torch.optim.Optimizer) -> None:
        """Refer to ``optimizer`` weakly: it refers to this object through its step hooks,
        and a reference back would make a cycle that keeps both (and every tensor of the
        optimizer) alive until the garbage collector runs (a sweep of 20 models under
        ``descentlab check`` held 8 of them: 1.2 GB against 0.5 GB unguarded)."""
        self._optimizer = weakref.ref(optimizer)

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimizer watched (``ReferenceError`` once the program has dropped it)."""
        optimizer = self._optimizer()
        if optimizer is None:
            raise ReferenceError("the optimizer watched was deleted")
        return optimizer

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
