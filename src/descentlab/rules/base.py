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
from dataclasses import dataclass, fields
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


def sign(x: Array) -> Array:
    """Element-wise sign (-1, 0 or 1) of a NumPy array or a torch tensor; the sign of NaN is
    0, as torch's (NumPy's would be NaN)."""
    if isinstance(x, (np.ndarray, np.generic)):
        return np.where(np.isnan(x), 0.0, np.sign(x)).astype(x.dtype)
    return x.sign()


def where(cond: Array, a: Array | float, b: Array | float) -> Array:
    """``a`` where ``cond`` holds, else ``b`` (either may be a Python number)."""
    if isinstance(cond, (np.ndarray, np.generic)):
        return np.where(cond, a, b)
    import torch

    return torch.where(cond, a, b)


def clip(x: Array, low: float | None, high: float | None) -> Array:
    """``x`` clipped to ``[low, high]`` (``None``: no bound on that side)."""
    if isinstance(x, (np.ndarray, np.generic)):
        return np.clip(x, low, high)
    return x.clamp(low, high)


def choose(cond: Any, a: Any, b: Any) -> Any:
    """A host coefficient that depends on the step: ``a`` if ``cond`` else ``b``.

    On the host ``cond`` is a Python bool and this is ``a if cond else b``. Inside the
    user's ``torch.compile`` the step count is a 0-dim tensor (see
    :mod:`descentlab.engines.traced`), so ``cond`` is one too and the choice is a
    ``torch.where``: no branch on data, so no graph break.
    """
    # (isinstance with tuples here and below: dynamo before torch 2.10 cannot trace X | Y)
    if isinstance(cond, (bool, np.bool_)):
        return a if cond else b
    import torch

    def wide(x: Any) -> Any:  # a number alone would become a tensor of the default dtype
        if isinstance(x, torch.Tensor):
            return x
        dtype = torch.float32 if cond.device.type == "mps" else torch.float64
        return torch.full((), x, dtype=dtype, device=cond.device)

    return torch.where(cond, wide(a), wide(b))


def at_least(x: Any, floor: float) -> Any:
    """``max(x, floor)`` for a host coefficient (a number, or a 0-dim tensor when traced)."""
    if isinstance(x, (int, float, np.number)):
        return max(x, floor)
    return x.clamp_min(floor)


def like(x: Any, stored: Array) -> Any:
    """A host coefficient ``x`` about to scale ``stored`` (a 0-dim state scalar): as the
    host's Python number is, a traced 0-dim tensor is first rounded to ``stored``'s dtype,
    so the product is computed and rounded in the stored precision either way."""
    if isinstance(x, (int, float, np.number, np.ndarray)):
        return x
    import torch

    return x.to(stored.dtype) if isinstance(x, torch.Tensor) else x


def mean_of_squares(old: Array, x: Array, decay: Any, rate: Any) -> Array:
    """A running mean of ``x**2``: ``old * decay + rate * (x * x)``, torch.optim's
    ``mul_(decay).addcmul_(x, x, value=rate)`` (Adam's ``exp_avg_sq``, RMSprop's
    ``square_avg``, Adadelta's two). Not the lerp form of :func:`ema`: where a float16 mean
    overflows it stays ``inf`` and the step divides to 0, where ``inf + rate * (new - inf)``
    would be NaN. The eager engine lowers it to those two in-place operations."""
    return old * decay + rate * (x * x)


def ema(old: Array, new: Array, rate: Any) -> Array:
    """Exponential moving average ``(1 - rate) * old + rate * new``, with ``rate = 1 - decay``.

    Written as the interpolation ``old + rate * (new - old)``, the form of ``torch.lerp``
    that torch.optim uses for its running means. ``rate`` is computed on the host in double
    precision: ``1 - 0.999`` evaluated in float32 would be off by 5e-5 relative.

    Means of squares use :func:`mean_of_squares` instead (torch's ``mul_``/``addcmul_``).
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
    scalars: ClassVar[tuple[str, ...]] = ()
    """Per-parameter SCALAR state (torch.optim keeps it beside ``step`` as 0-dim tensors:
    NAdam's ``mu_product``, ASGD's ``eta`` and ``mu``). It lives on the host side of a step:
    :meth:`advance_scalars` gives its next values and :meth:`coefficients` reads the values
    before and after; the array math never sees it."""
    elementwise: ClassVar[bool] = True
    """Whether ``__call__`` treats every element on its own. A transform that reduces over
    the whole tensor or over axes (norms, matrix products: Adafactor, Muon) sets False; its
    slots may then be shaped otherwise than the parameter (:meth:`slot_shapes`). Such rules
    are run by the reference engine and the NumPy API, one tensor at a time."""

    def initial(self, hp: Mapping[str, float]) -> dict[str, float]:
        """Slots and scalars that start at a constant other than zero, from ``hp``.

        ``{"sum": hp["initial_accumulator_value"]}`` for Adagrad; every other slot starts at
        zero (every scalar too, unless given here). Read once, when a parameter's state is
        created (:meth:`Rule.init`).
        """
        return {}

    def slot_shapes(self, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """The slots a parameter of ``shape`` keeps, with their shapes (default: every slot,
        shaped like the parameter). Only a transform that is not element-wise overrides it."""
        return {name: tuple(shape) for name in self.slots}

    def advance_scalars(
        self, hp: Mapping[str, float], step: int, scalars: Mapping[str, Array]
    ) -> dict[str, Any]:
        """The values of this transform's scalars after step ``step``, from their stored
        values (0-dim arrays or tensors): computed in the stored precision, as torch.optim
        computes them in its 0-dim tensors, or Python numbers (stored with one rounding)."""
        return {}

    def coefficients(self, hp: Mapping[str, float], step: int) -> dict[str, float]:
        """Host-side scalars for step ``step`` (1-based) from hyperparameters ``hp``.

        A transform with :attr:`scalars` takes two more arguments, ``before`` and ``after``:
        the values of every scalar of the rule at the start and at the end of the step, as
        floats.
        """
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

    # The names and flags below are read many times a step by the engines: computed once
    # (a rule is frozen), kept beside the fields; pickles and copies carry the fields only.
    def __post_init__(self) -> None:
        kept = self.__dict__
        slots = tuple(s for t in self.transforms for s in t.slots)
        scalars = tuple(s for t in self.transforms for s in t.scalars)
        everything = slots + scalars
        kept["_scalar_names"], kept["_slots"] = scalars, slots
        kept["_clash"] = everything if len(set(everything)) != len(everything) else None
        kept["_elementwise"] = all(t.elementwise for t in self.transforms)

    def __hash__(self) -> int:
        # a rule keys every kernel and program lookup: its hash (the fields') is kept
        found: int | None = self.__dict__.get("_hash")
        if found is None:
            found = self.__dict__["_hash"] = hash((self.name, self.transforms))
        return found

    def __getstate__(self) -> dict[str, Any]:
        # the fields only: a string's hash differs from one process to the next
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    @property
    def slots(self) -> tuple[str, ...]:
        """Names of the per-parameter state arrays, in chain order (every one a parameter
        of some shape may keep: see :meth:`slot_shapes`)."""
        clash = self.__dict__["_clash"]
        if clash is not None:
            raise ValueError(f"rule {self.name!r} has clashing state names {clash}")
        names: tuple[str, ...] = self.__dict__["_slots"]
        return names

    @property
    def scalar_names(self) -> tuple[str, ...]:
        """Names of the per-parameter scalar state (:attr:`Transform.scalars`), in chain order."""
        names: tuple[str, ...] = self.__dict__["_scalar_names"]
        return names

    @property
    def elementwise(self) -> bool:
        """Whether every transform treats each element on its own (see
        :attr:`Transform.elementwise`): what the compiled and flat engines require."""
        flag: bool = self.__dict__["_elementwise"]
        return flag

    @property
    def runs_flat(self) -> bool:
        """Whether many parameters can be stepped as one buffer (the flat engines, the lab's
        batched runs): every transform element-wise and no per-parameter scalars."""
        return self.elementwise and not self.scalar_names

    @property
    def starts_nonzero(self) -> bool:
        """Whether a transform declares a start other than zero for a slot (Adagrad's)."""
        return any(_declares_start(t) for t in self.transforms)

    def slot_shapes(self, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """The slots a parameter of ``shape`` keeps, with their shapes, in chain order."""
        out: dict[str, tuple[int, ...]] = {}
        for t in self.transforms:
            out.update(t.slot_shapes(tuple(shape)))
        return out

    def initial(self, hp: Mapping[str, float] | None) -> dict[str, float]:
        """The slots and scalars that start at a constant other than zero (see
        :meth:`Transform.initial`); scalars not listed start at zero.

        ``hp`` may be ``None`` only for a rule whose state all starts at zero.
        """
        out: dict[str, float] = {}
        for t in self.transforms:
            if not _declares_start(t):
                continue
            try:
                out.update(t.initial({} if hp is None else hp))
            except KeyError as missing:
                raise ValueError(
                    f"rule {self.name!r} starts its state at values given by hyperparameters "
                    f"({missing}): pass them to init(p, hp)"
                ) from None
        return out

    def init(self, p: Array, hp: Mapping[str, float] | None = None) -> dict[str, Array]:
        """Fresh state for parameter ``p``: its slots (:meth:`slot_shapes`), zero unless a
        transform starts them elsewhere (:meth:`Transform.initial`, from ``hp``), and its
        scalars as 0-dim arrays of ``p``'s dtype."""
        start = self.initial(hp)
        state: dict[str, Array]
        if isinstance(p, np.ndarray):
            state = {
                name: np.zeros(shape, p.dtype) for name, shape in self.slot_shapes(p.shape).items()
            }
            for name in self.scalar_names:
                state[name] = np.array(start.get(name, 0.0), dtype=p.dtype)
        else:
            import torch

            state = {
                name: _torch_zeros_like(p) if shape == tuple(p.shape) else p.new_zeros(shape)
                for name, shape in self.slot_shapes(tuple(p.shape)).items()
            }
            for name in self.scalar_names:
                state[name] = torch.tensor(start.get(name, 0.0), dtype=p.dtype)
        for name, value in start.items():
            if value != 0 and name not in self.scalar_names:
                state[name] = state[name] + value
        return state

    def coefficients(
        self,
        hp: Mapping[str, float],
        step: Any,
        before: Mapping[str, Any] | None = None,
        after: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """All per-step scalars of the chain for ``step`` (1-based).

        ``step`` is a Python int on the host. Inside the user's ``torch.compile`` it is a
        float64 tensor of step counts, one per parameter (:mod:`descentlab.engines.traced`),
        and every coefficient that depends on it is a tensor of the same shape: transforms
        write their coefficients with arithmetic and :func:`choose`, never ``if``.

        ``before``/``after``: the rule's scalar state at the start and the end of the step,
        as floats (see :meth:`begin_step`); required when the rule has scalars.
        """
        if isinstance(step, (int, float)) and step < 1:  # a 0-dim tensor when traced
            raise ValueError(f"step must be >= 1 (steps count from 1), got {step}")
        if self.scalar_names and (before is None or after is None):
            raise ValueError(
                f"rule {self.name!r} keeps scalar state {self.scalar_names}: "
                "use begin_step(hp, step, scalars)"
            )
        out: dict[str, float] = {}
        for t in self.transforms:
            # a transform with scalars reads them too (see Transform.coefficients)
            c = (
                t.coefficients(hp, step, before, after)  # type: ignore[call-arg]
                if t.scalars
                else t.coefficients(hp, step)
            )
            clash = [name for name in c if name in out]  # (no set ops: dynamo traces this)
            if clash:
                raise ValueError(
                    f"rule {self.name!r} has clashing coefficient names {sorted(clash)}"
                )
            out.update(c)
        return out

    def begin_step(
        self, hp: Mapping[str, Any], step: Any, scalars: Mapping[str, Array] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The host side of step ``step``: ``(coefficients, new scalar values)``.

        ``scalars`` are the stored scalar state (0-dim arrays or tensors, read not written);
        every driver stores the new values it is given, in its storage's precision. For a
        rule without scalars this is ``(coefficients(hp, step), {})``.
        """
        if not self.scalar_names:
            return self.coefficients(hp, step), {}
        if scalars is None:
            raise ValueError(f"rule {self.name!r} keeps scalar state {self.scalar_names}")
        new: dict[str, Any] = {}
        for t in self.transforms:
            if t.scalars:
                new.update(t.advance_scalars(hp, step, {k: scalars[k] for k in t.scalars}))
        if isinstance(step, (int, float)):
            before = {k: float(scalars[k]) for k in self.scalar_names}
            after = {k: float(new.get(k, before[k])) for k in self.scalar_names}
        else:
            # traced (a 0-dim tensor step): the values stay tensors, read in the graph, in
            # the step's precision as the host reads floats; the new ones are rounded to
            # their stored precision first, as storing them rounds them
            new = {k: v.to(scalars[k].dtype) for k, v in new.items()}
            before = {k: scalars[k].to(step.dtype) for k in self.scalar_names}
            after = {k: new[k].to(step.dtype) if k in new else before[k] for k in before}
        return self.coefficients(hp, step, before, after), new

    def update(
        self, p: Array, g: Array, state: Mapping[str, Array], c: Coefficients
    ) -> tuple[Array, dict[str, Array]]:
        """Pure update: returns the new parameter and the new slots; mutates nothing."""
        u = g
        new_state: dict[str, Array] = {}
        for t in self.transforms:
            u, changed = t(u, p, state, c)
            new_state.update(changed)
        return p + u, new_state

    def step(
        self, p: Array, g: Array, state: Mapping[str, Array], *, step: int, **hp: float
    ) -> tuple[Array, dict[str, Array]]:
        """Convenience: :meth:`begin_step` then :meth:`update` for one step; the returned
        state holds the new slots and scalars."""
        c, scalars = self.begin_step(hp, step, {k: state[k] for k in self.scalar_names})
        new_p, new_state = self.update(p, g, state, c)
        for name in self.scalar_names:
            new_state[name] = _stored_like(state[name], scalars.get(name, state[name]))
        return new_p, new_state


def _declares_start(t: Transform) -> bool:
    return type(t).initial is not Transform.initial


def _stored_like(stored: Array, value: Any) -> Array:
    """``value`` as a 0-dim array or tensor of ``stored``'s dtype (rounded once)."""
    if isinstance(stored, np.ndarray | np.generic):
        return np.array(value, dtype=stored.dtype)
    import torch

    if isinstance(value, torch.Tensor):
        return value.to(stored.dtype).reshape(())
    return torch.tensor(float(value), dtype=stored.dtype)


def _torch_zeros_like(p: Array) -> Array:
    import torch

    return torch.zeros_like(p, memory_format=torch.preserve_format)
