"""The one zero-grad detector: was a parameter's ``.grad`` reset between two backward passes?

Backward passes *sum* into ``.grad``; ``zero_grad()`` (or ``.grad = None``, or
``model.zero_grad()``) resets it. Two tools need to know which of the two happened before
each pass: the guard (gradients carried over into a later step: ``zero_grad`` forgotten)
and telemetry (gradients summed and then reset without any optimizer step: a skipped step,
as ``GradScaler`` makes). :class:`ZeroGradDetector` answers for one parameter, from two
autograd hooks, and counts the passes both tools read.

How it decides, just before autograd adds a pass into ``.grad``: ``None`` is a reset; the
very tensor the previous pass left, at the same version counter, is untouched (still the
sum: no read at all); anything else (``zero_()``, clipping, a new tensor) is read once on
the device: all zeros is a reset.

Example:
    >>> import torch
    >>> w = torch.nn.Parameter(torch.ones(3))
    >>> detector = ZeroGradDetector(w)
    >>> for _ in range(2):
    ...     w.sum().backward()
    >>> detector.since_reset, detector.since_step  # two passes summed, no step yet
    (2, 2)
    >>> detector.step_taken()
    >>> w.grad.zero_()  # doctest: +ELLIPSIS
    tensor(...)
    >>> w.sum().backward()
    >>> detector.since_reset, detector.since_step, detector.discards
    (1, 1, 0)
    >>> w.grad = None  # the pass since the step is thrown away: a discarded step
    >>> w.sum().backward()
    >>> detector.discards
    1
    >>> detector.remove()
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

__all__ = ["ZeroGradDetector"]


class ZeroGradDetector:
    """Watches one parameter's ``.grad`` across backward passes and optimizer steps.

    Attributes:
        since_reset: backward passes summed into ``.grad`` since it was last found reset.
        since_step: backward passes since the last :meth:`step_taken`.
        discards: resets found while ``.grad`` held passes that no step had applied yet
            (the gradients of those passes were thrown away).

    Args:
        param: the parameter (a leaf that requires grad).
        lazy: look only when a reset would discard something (``since_step`` and
            ``since_reset`` both non-zero), so the passes right after a step read nothing
            from the device. ``since_reset`` is then only kept while it matters for
            ``discards``: use ``lazy=False`` to read ``since_reset`` itself.
    """

    def __init__(self, param: torch.Tensor, *, lazy: bool = False) -> None:
        self.since_reset = 0
        self.since_step = 0
        self.discards = 0
        self.lazy = lazy
        self._param = weakref.ref(param)
        self._grad: weakref.ref[torch.Tensor] | None = None  # the .grad after the last pass...
        self._version = -1  # ...and its version counter then
        self._handles: list[Any] = [
            param.register_hook(self._before_pass),
            param.register_post_accumulate_grad_hook(self._after_pass),
        ]

    @property
    def pending(self) -> int:
        """Passes summed into ``.grad`` since the last step and the last reset: what a reset
        now would throw away."""
        return min(self.since_step, self.since_reset)

    def at_step(self) -> str:
        """What ``.grad`` holds as a step begins, read without touching the device: ``"none"``
        (no backward pass reached it since the last step), ``"reset"`` (passes since the last
        step, then ``.grad`` set to ``None``), ``"kept"`` (the very sum the last pass left)
        or ``"touched"`` (changed in place since: clipped, unscaled, or zeroed; read it)."""
        param = self._param()
        if not self.since_step or param is None:
            return "none"
        grad = param.grad
        if grad is None:
            return "reset"
        if self._grad is not None and self._grad() is grad and grad._version == self._version:
            return "kept"
        return "touched"

    def step_taken(self) -> None:
        """Tell the detector an optimizer step read ``.grad`` (call it after each step)."""
        self.since_step = 0

    def remove(self) -> None:
        """Detach both autograd hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _was_reset(self) -> bool:
        param = self._param()
        old = None if param is None else param.grad
        if old is None:
            return True
        if self._grad is not None and self._grad() is old and old._version == self._version:
            return False  # untouched since the last pass: still holds its sum
        with torch.no_grad():  # touched (zero_, clipping, a new tensor): read it
            return not bool(old.any())

    def _before_pass(self, incoming: torch.Tensor) -> None:  # before autograd adds into .grad
        if self.lazy and not self.pending:
            return None
        if self._was_reset():
            if self.pending:
                self.discards += 1
            self.since_reset = 0
        return None

    def _after_pass(self, param: torch.Tensor) -> None:  # after autograd added into .grad
        self.since_reset += 1
        self.since_step += 1
        grad = param.grad
        self._grad = None if grad is None else weakref.ref(grad)
        self._version = -1 if grad is None else grad._version
