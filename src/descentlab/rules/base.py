"""The machinery every rule shares: a rule is a chain of transforms over ONE array.

A *transform* maps an incoming direction ``u`` (at first the gradient) to an outgoing one,
reading the parameter ``p`` and its own slots of optimizer state. A *rule* is a chain of
transforms whose final output is the change applied to the parameter: ``p_new = p + u``.

Hyperparameters enter in two ways, which is what lets the same rule run in a plain Python
loop, on NumPy arrays and inside one compiled kernel over a flat buffer:

* **structure** (booleans such as ``nesterov`` or ``amsgrad``, and whether weight decay is
  on at all) picks which transforms are in the chain; it is fixed when the rule is built;
* **coefficients** (``lr``, ``beta1``, the bias corrections of step ``t``...) are scalars
  computed on the host once per step by :meth:`Rule.coefficients` and passed in, so a
  learning-rate schedule never changes the code that runs.

The array math only uses ``+ - * /`` and the few helpers below, so one definition serves
``numpy.ndarray`` and ``torch.Tensor`` alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

Array = Any
"""A ``numpy.ndarray`` or a ``torch.Tensor``; rules never look at which."""

Coefficients = Mapping[str, Any]
"""Per-step scalars (Python floats, or 0-dim tensors inside a compiled engine)."""


def advance(count: Any) -> Any:
    """The one rule of step counting: a step advances its parameter's count by one, before
    the step's coefficients are computed, so steps count from 1 (``count`` of optax's
    ``ScaleByAdamState``; ``state["step"]`` of torch.optim).

    A Python number gives the next one; a tensor or array counter is advanced in place and
    returned (a compiled kernel then advances it inside its graph). Every driver calls this.

    >>> advance(0)
    1
    >>> import torch
    >>> t = torch.tensor(4.0)
    >>> advance(t) is t, t.item()
    (True, 5.0)
    """
    count += 1
    return count


def sqrt(x: Array) -> Array:
    """Element-wise square root of a NumPy array or a torch tensor."""
    return np.sqrt(x) if isinstance(x, (np.ndarray, np.generic)) else x.sqrt()


def maximum(a: Array, b: Array) -> Array:
    """Element-wise maximum of two NumPy arrays or two torch tensors."""
    if isinstance(a, (np.ndarray, np.generic)):
        return np.maximum(a, b)
    return a.maximum(b)


def absolute(x: Array) -> Array:
    """Element-wise absolute value of a NumPy array or a torch tensor."""
    return np.abs(x) if isinstance(x, (np.ndarray, np.generic)) else x.abs()


def ema(old: Array, new: Array, rate: Any) -> Array:
    """Exponential moving average ``(1 - rate) * old + rate * new``, with ``rate = 1 - decay``.

    Written as the interpolation ``old + rate * (new - old)``, the form of ``torch.lerp``
    that torch.optim uses for its running means. ``rate`` is computed on the host in double
    precision: ``1 - 0.999`` evaluated in float32 would be off by 5e-5 relative.
    """
    return old + rate * (new - old)


@dataclass(frozen=True)
class Transform(ABC):
    """One stage of a rule. Subclasses set ``slots`` and implement ``__call__``.

    ``slots`` names the state arrays the transform keeps per parameter. The names are the
    ones torch.optim uses (``exp_avg``, ``momentum_buffer``...), so a ``state_dict`` moves
    between ``torch.optim`` and descentlab unchanged; inside the math they get the short
    names of the formula (``m``, ``v``).
    """

    slots: ClassVar[tuple[str, ...]] = ()

    def initial(self, hp: Mapping[str, float]) -> dict[str, float]:
        """Slots that start at a constant other than zero, from hyperparameters ``hp``.

        ``{"sum": hp["initial_accumulator_value"]}`` for Adagrad; every other slot starts at
        zero. Read once, when a parameter's state is created (:meth:`Rule.init`).
        """
        return {}

    def coefficients(self, hp: Mapping[str, float], step: int) -> dict[str, float]:
        """Host-side scalars for step ``step`` (1-based) from hyperparameters ``hp``."""
        return {}

    @abstractmethod
    def __call__(
        self, u: Array, p: Array, state: Mapping[str, Array], c: Coefficients
    ) -> tuple[Array, dict[str, Array]]:
        """Map ``u`` to the outgoing direction; return it with this transform's new slots."""


@dataclass(frozen=True)
class Rule:
    """An update rule: a named chain of transforms; ``p_new = p + chain(g)``.

    Example:
        >>> import numpy as np
        >>> from descentlab.rules import sgd
        >>> rule = sgd(momentum=True)
        >>> p, g = np.array([1.0, 2.0]), np.array([0.5, -1.0])
        >>> state = rule.init(p)
        >>> p, state = rule.step(p, g, state, step=1, lr=0.1, momentum=0.9, dampening=0.0)
        >>> p.tolist(), state["momentum_buffer"].tolist()
        ([0.95, 2.1], [0.5, -1.0])
    """

    name: str
    transforms: tuple[Transform, ...]

    @property
    def slots(self) -> tuple[str, ...]:
        """Names of the per-parameter state arrays, in chain order."""
        names = tuple(s for t in self.transforms for s in t.slots)
        if len(set(names)) != len(names):
            raise ValueError(f"rule {self.name!r} has clashing state slots {names}")
        return names

    @property
    def starts_nonzero(self) -> bool:
        """Whether a transform declares a start other than zero for a slot (Adagrad's)."""
        return any(_declares_start(t) for t in self.transforms)

    def initial(self, hp: Mapping[str, float] | None) -> dict[str, float]:
        """The slots that start at a constant other than zero (see :meth:`Transform.initial`).

        ``hp`` may be ``None`` only for a rule whose slots all start at zero.
        """
        out: dict[str, float] = {}
        for t in self.transforms:
            if not _declares_start(t):
                continue
            if hp is None:
                raise ValueError(
                    f"rule {self.name!r} starts slots at values given by hyperparameters: "
                    "pass them to init(p, hp)"
                )
            out.update(t.initial(hp))
        return out

    def init(self, p: Array, hp: Mapping[str, float] | None = None) -> dict[str, Array]:
        """Fresh state for parameter ``p``: every slot shaped like ``p``, zero unless a
        transform starts it elsewhere (:meth:`Transform.initial`, from ``hp``)."""
        zeros = np.zeros_like if isinstance(p, np.ndarray) else _torch_zeros_like
        start = self.initial(hp)
        state = {name: zeros(p) for name in self.slots}
        for name, value in start.items():
            if value != 0:
                state[name] = state[name] + value
        return state

    def coefficients(self, hp: Mapping[str, float], step: int) -> dict[str, float]:
        """All per-step scalars of the chain for ``step`` (1-based)."""
        if step < 1:
            raise ValueError(f"step must be >= 1 (steps count from 1), got {step}")
        out: dict[str, float] = {}
        for t in self.transforms:
            c = t.coefficients(hp, step)
            if not out.keys().isdisjoint(c):
                clash = sorted(out.keys() & c.keys())
                raise ValueError(f"rule {self.name!r} has clashing coefficient names {clash}")
            out.update(c)
        return out

    def update(
        self, p: Array, g: Array, state: Mapping[str, Array], c: Coefficients
    ) -> tuple[Array, dict[str, Array]]:
        """Pure update: returns the new parameter and the new state; mutates nothing."""
        u = g
        new_state: dict[str, Array] = {}
        for t in self.transforms:
            u, changed = t(u, p, state, c)
            new_state.update(changed)
        return p + u, new_state

    def step(
        self, p: Array, g: Array, state: Mapping[str, Array], *, step: int, **hp: float
    ) -> tuple[Array, dict[str, Array]]:
        """Convenience: :meth:`coefficients` then :meth:`update` for one step."""
        return self.update(p, g, state, self.coefficients(hp, step))


def _declares_start(t: Transform) -> bool:
    return type(t).initial is not Transform.initial


def _torch_zeros_like(p: Array) -> Array:
    import torch

    return torch.zeros_like(p, memory_format=torch.preserve_format)
