"""The same rules on NumPy arrays: a functional API and a small object API.

Functional (pure, optax-style): parameters may be one array, or a list, tuple or dict of
arrays; nothing is mutated.

    >>> import numpy as np
    >>> from descentlab import numpy as dnp
    >>> opt = dnp.adam(lr=0.1)
    >>> w = np.zeros(3)
    >>> state = opt.init(w)
    >>> for _ in range(200):
    ...     grad = 2 * (w - np.array([1.0, 2.0, 3.0]))   # gradient of ||w - target||^2
    ...     w, state = opt.update(w, grad, state)
    >>> np.round(w, 2).tolist()
    [1.0, 2.0, 3.0]

Object (the seed's "from scratch" form, arrays updated in place):

    >>> w = np.zeros(3)
    >>> opt = dnp.SGD([w], lr=0.1, momentum=0.9)
    >>> opt.step([np.array([1.0, 0.0, -1.0])])
    >>> w.tolist()
    [-0.1, 0.0, 0.1]
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from . import optimizers
from .engines import policy
from .engines.policy import NUMPY_ENGINES, compute_dtype, is_low_precision
from .rules.base import Rule, advance

__all__ = [
    "ASGD",
    "SGD",
    "Adadelta",
    "Adafactor",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Momentum",
    "Muon",
    "NAdam",
    "Optimizer",
    "RAdam",
    "RMSprop",
    "Rprop",
    "State",
    "Transformation",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "asgd",
    "momentum",
    "muon",
    "nadam",
    "radam",
    "rmsprop",
    "rprop",
    "sgd",
]


class State(NamedTuple):
    """Optimizer state, per parameter: its step count and a dict of slot arrays.

    Both are trees shaped like the parameters. Each parameter counts its own steps (a
    parameter whose gradient was ``None`` does not advance), as in torch.optim, so a
    gradient that arrives late still gets the bias correction of its own first step.
    """

    steps: Any
    slots: Any


def _apply(
    rule: Rule, p: np.ndarray, g: np.ndarray, slots: dict, c: Any
) -> tuple[np.ndarray, dict]:
    """The rule on one array; float16 is computed in float32 and rounded once, as the torch
    drop-ins do (``eps=1e-8`` is 0 in float16); the state keeps the parameter's dtype."""
    if not is_low_precision(p.dtype):
        return rule.update(p, g, slots, c)
    wide = compute_dtype(p.dtype)
    new_p, new_slots = rule.update(
        p.astype(wide), g.astype(wide), {k: v.astype(wide) for k, v in slots.items()}, c
    )
    # A value past float16's range is stored as inf, as torch stores it (the means of
    # squares are written so that an inf one makes a zero step, not NaN): no warning.
    with np.errstate(over="ignore"):
        return new_p.astype(p.dtype), {k: v.astype(p.dtype) for k, v in new_slots.items()}


def _init(rule: Rule, p: np.ndarray, hp: dict[str, float]) -> dict[str, np.ndarray]:
    """Fresh state of one array; scalars (NAdam's ``mu_product``...) are 0-dim arrays of the
    compute dtype (float32 for float16 arrays)."""
    state = rule.init(p, hp)
    for name in rule.scalar_names:
        state[name] = state[name].astype(compute_dtype(p.dtype))
    return state


def _begin(
    rule: Rule, hp: dict[str, float], t: int, state: dict[str, np.ndarray]
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Coefficients of step ``t`` and the new scalars of one array, in their stored dtype."""
    c, new = rule.begin_step(hp, t, {k: state[k] for k in rule.scalar_names})
    dtypes = {k: state[k].dtype for k in rule.scalar_names}
    return c, {k: np.array(v, dtype=dtypes[k]) for k, v in new.items()}


def _map(fn: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _map(fn, tree[k], *(r[k] for r in rest)) for k in tree}
    if isinstance(tree, list | tuple):
        return type(tree)(_map(fn, *xs) for xs in zip(tree, *rest, strict=True))
    return fn(tree, *rest)


def _where(name: str, path: tuple[Any, ...]) -> str:
    """``grads['layer'][0]``: where in a tree something is, for messages."""
    return name + "".join(f"[{k!r}]" for k in path)


def _pairs(params: Any, other: Any, name: str, path: tuple[Any, ...] = ()) -> Any:
    """``(path, leaf of params, leaf of other)`` for every array of ``params``, after
    checking that ``other`` (the gradients, or a tree of the state) is shaped like it:
    the same dict keys, list lengths and nesting; raises ValueError naming the first place
    that differs."""
    if isinstance(params, dict):
        if not isinstance(other, dict):
            raise ValueError(
                f"{_where(name, path)} must be a dict like {_where('params', path)}, "
                f"got {type(other).__name__}"
            )
        if other.keys() != params.keys():
            missing = [k for k in params if k not in other]
            extra = [k for k in other if k not in params]
            raise ValueError(
                f"{_where(name, path)} has other keys than {_where('params', path)}: "
                f"missing {missing}, unexpected {extra}"
            )
        for k in params:
            yield from _pairs(params[k], other[k], name, (*path, k))
    elif isinstance(params, list | tuple):
        if not isinstance(other, list | tuple) or len(other) != len(params):
            got = f"{len(other)} items" if isinstance(other, list | tuple) else type(other).__name__
            raise ValueError(
                f"{_where(name, path)} must be a list of {len(params)} items like "
                f"{_where('params', path)}, got {got}"
            )
        for i, (a, b) in enumerate(zip(params, other, strict=True)):
            yield from _pairs(a, b, name, (*path, i))
    else:
        yield path, params, other


def _check_grad(path: tuple[Any, ...], p: np.ndarray, g: Any, name: str = "grads") -> None:
    """A gradient has its parameter's shape exactly: never broadcast."""
    if g is not None and np.shape(g) != p.shape:
        raise ValueError(
            f"{_where(name, path)} has shape {np.shape(g)} but {_where('params', path)} has "
            f"shape {p.shape}: a gradient must have its parameter's shape (it is never "
            "broadcast)"
        )


@functools.lru_cache(maxsize=4096)
def _slot_layout(rule: Rule, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """The state keys a parameter of ``shape`` keeps under ``rule``, with their shapes."""
    return {**rule.slot_shapes(shape), **dict.fromkeys(rule.scalar_names, ())}


def _check_slots(rule: Rule, path: tuple[Any, ...], p: np.ndarray, slots: Any) -> None:
    """The state of one array holds the rule's keys, each of its shape."""
    expected = _slot_layout(rule, p.shape)
    if (
        isinstance(slots, dict)
        and slots.keys() == expected.keys()
        and all(np.shape(slots[key]) == shape for key, shape in expected.items())
    ):
        return
    where = _where("state.slots", path)
    if not isinstance(slots, dict) or slots.keys() != expected.keys():
        held = sorted(slots) if isinstance(slots, dict) else type(slots).__name__
        raise ValueError(
            f"{where} holds {held}, but {rule.name} keeps {sorted(expected)}: a state made "
            "by another optimizer? (make it with this optimizer's init(params))"
        )
    for key, shape in expected.items():
        if np.shape(slots[key]) != shape:
            raise ValueError(
                f"{where}[{key!r}] has shape {np.shape(slots[key])}, expected {shape} for "
                f"{_where('params', path)} of shape {p.shape}"
            )


def _check_array(p: Any) -> np.ndarray:
    if not isinstance(p, np.ndarray) or not np.issubdtype(p.dtype, np.floating):
        what = f"an array of {p.dtype}" if isinstance(p, np.ndarray) else type(p).__name__
        raise TypeError(
            "parameters must be floating-point numpy arrays (or lists/tuples/dicts of them), "
            f"got {what}"
        )
    return p


class Transformation:
    """A pure optimizer: ``init(params) -> state`` and ``update(params, grads, state)``.

    Build it with :func:`sgd`, :func:`momentum`, :func:`rmsprop`, :func:`adam`,
    :func:`adamw`, :func:`adagrad`...; hyperparameters and defaults are those of the torch
    drop-in of the same name. Each parameter counts its own steps; a ``None`` gradient
    leaves its parameter, state and step count unchanged. float16 arrays are computed in
    float32 and rounded once, as the torch drop-ins do.
    """

    def __init__(self, name: str, **hp: Any) -> None:
        self.info = optimizers.get(name)
        self.hp = self.info.with_defaults(**hp)
        self.rule = self.info.rule(self.hp)
        self.scalars = self.info.scalars(self.hp)  # the hyperparameters the rule reads

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hp.items() if k in self.info.defaults)
        return f"{self.info.name}({args})"

    def init(self, params: Any) -> State:
        """Fresh state for ``params`` (an array or a list/tuple/dict of arrays): zero slots,
        but Adagrad's ``sum`` at ``initial_accumulator_value``."""
        slots = _map(lambda p: _init(self.rule, _check_array(p), self.scalars), params)
        return State(_map(lambda p: 0, params), slots)

    def update(self, params: Any, grads: Any, state: State) -> tuple[Any, State]:
        """One step: returns new parameters and new state; inputs are not modified.

        ``grads`` and ``state`` must be shaped like ``params`` (same keys, lengths and
        nesting; each gradient ``None`` or of its parameter's shape): a ValueError names
        the first place that differs.
        """
        if not isinstance(state, State):
            raise TypeError(f"state must be the State that init() made, got {type(state).__name__}")
        if isinstance(params, np.ndarray):  # one array: the same checks, without the walk
            _check_grad((), params, grads)
            _check_slots(self.rule, (), params, state.slots)
        else:
            for path, p, g in _pairs(params, grads, "grads"):
                _check_grad(path, p, g)
            for path, p, slots in _pairs(params, state.slots, "state.slots"):
                _check_slots(self.rule, path, p, slots)
            for _ in _pairs(params, state.steps, "state.steps"):
                pass
        cache: dict[int, Any] = {}

        def one(p: np.ndarray, g: np.ndarray | None, t: int, s: dict) -> _Step:
            if g is None:
                return _Step(p, t, s)
            t = advance(t)
            if self.rule.scalar_names:  # per-array scalars (NAdam's mu_product)
                c, scalars = _begin(self.rule, self.scalars, t, s)
            else:
                if t not in cache:
                    cache[t] = self.rule.coefficients(self.scalars, t)
                c, scalars = cache[t], {}
            new_p, new_s = _apply(self.rule, p, np.asarray(g, dtype=p.dtype), s, c)
            return _Step(new_p, t, {**new_s, **scalars})

        out = _map(one, params, grads, state.steps, state.slots)
        return _split(out, 0), State(_split(out, 1), _split(out, 2))


class _Step(NamedTuple):
    param: np.ndarray
    step: int
    slots: dict


def _split(tree: Any, index: int) -> Any:
    if isinstance(tree, _Step):
        return tree[index]
    if isinstance(tree, dict):
        return {k: _split(v, index) for k, v in tree.items()}
    return type(tree)(_split(v, index) for v in tree)


def sgd(**hp: Any) -> Transformation:
    """SGD (heavy-ball momentum, torch's form); hyperparameters as ``torch.optim.SGD``."""
    return Transformation("sgd", **hp)


def momentum(**hp: Any) -> Transformation:
    """Momentum in the seed's EMA form; ``lr=1e-3, momentum=0.9, weight_decay=0``."""
    return Transformation("momentum", **hp)


def rmsprop(**hp: Any) -> Transformation:
    """RMSProp; hyperparameters as ``torch.optim.RMSprop``."""
    return Transformation("rmsprop", **hp)


def adagrad(**hp: Any) -> Transformation:
    """Adagrad; hyperparameters as ``torch.optim.Adagrad``."""
    return Transformation("adagrad", **hp)


def adadelta(**hp: Any) -> Transformation:
    """Adadelta; hyperparameters as ``torch.optim.Adadelta``."""
    return Transformation("adadelta", **hp)


def adamax(**hp: Any) -> Transformation:
    """Adamax; hyperparameters as ``torch.optim.Adamax``."""
    return Transformation("adamax", **hp)


def radam(**hp: Any) -> Transformation:
    """RAdam; hyperparameters as ``torch.optim.RAdam``."""
    return Transformation("radam", **hp)


def adam(**hp: Any) -> Transformation:
    """Adam; hyperparameters as ``torch.optim.Adam`` plus ``bias_correction``."""
    return Transformation("adam", **hp)


def adamw(**hp: Any) -> Transformation:
    """AdamW; hyperparameters as ``torch.optim.AdamW``."""
    return Transformation("adamw", **hp)


def nadam(**hp: Any) -> Transformation:
    """NAdam; hyperparameters as ``torch.optim.NAdam`` (``mu_product`` kept per array)."""
    return Transformation("nadam", **hp)


def asgd(**hp: Any) -> Transformation:
    """ASGD; hyperparameters as ``torch.optim.ASGD`` (the average of the iterates is the
    state's ``ax``)."""
    return Transformation("asgd", **hp)


def rprop(**hp: Any) -> Transformation:
    """Rprop; hyperparameters as ``torch.optim.Rprop``."""
    return Transformation("rprop", **hp)


def adafactor(**hp: Any) -> Transformation:
    """Adafactor; hyperparameters as ``torch.optim.Adafactor`` (factored moments of every
    array with 2 or more dimensions)."""
    return Transformation("adafactor", **hp)


def muon(**hp: Any) -> Transformation:
    """Muon, for 2-D arrays; hyperparameters as ``torch.optim.Muon``. NumPy has no
    bfloat16: the Newton-Schulz iterations are computed in float32 with every result
    rounded to bfloat16, which agrees with torch to a few bfloat16 roundings."""
    return Transformation("muon", **hp)


class Optimizer:
    """Object API: owns its state and updates the given arrays in place.

    Args:
        params: a sequence of floating-point arrays; they are modified by :meth:`step`.
        engine: ``"reference"`` evaluates the rule with NumPy operations (a temporary array
            per operation, like the seed's ``adam_update``); ``"compiled"`` runs the same
            rule as ONE fused in-place pass over zero-copy torch views of the arrays
            (``torch.compile``, compiled once per rule); ``"auto"`` (default) compiles for
            C-contiguous arrays of at least 2**20 elements.
        **hp: hyperparameters, as the torch drop-in of the same name.
    """

    name = ""

    def __init__(self, params: Sequence[np.ndarray], *, engine: str = "auto", **hp: Any) -> None:
        if isinstance(params, np.ndarray) or not isinstance(params, Sequence):
            raise TypeError("params must be a list of numpy arrays (updated in place)")
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        if engine not in NUMPY_ENGINES:
            raise ValueError(
                f"unknown engine {engine!r}; choose one of: {', '.join(NUMPY_ENGINES)}"
            )
        self.params = list(params)
        self.engine = engine
        self.transformation = Transformation(self.name, **hp)
        self.state = self.transformation.init(self.params)

    def step(self, grads: Sequence[np.ndarray | None]) -> None:
        """Apply one update; ``grads[i]`` is the gradient of ``params[i]`` (or None)."""
        if len(grads) != len(self.params):
            raise ValueError(f"expected {len(self.params)} gradients, got {len(grads)}")
        import torch

        from .engines.flat import run_flat

        for i, (p, g) in enumerate(zip(self.params, grads, strict=True)):
            _check_grad((i,), p, g)
        rule, hp = self.transformation.rule, self.transformation.scalars
        steps = list(self.state.steps)
        for i, (p, g, slots) in enumerate(zip(self.params, grads, self.state.slots, strict=True)):
            if g is None:
                continue
            steps[i] = advance(steps[i])
            g = np.ascontiguousarray(g, dtype=p.dtype)
            if rule.scalar_names:
                c, scalars = _begin(rule, hp, steps[i], slots)
            else:
                c, scalars = rule.coefficients(hp, steps[i]), {}
            if rule.elementwise and policy.numpy_array_compiles(self.engine, p):
                # one fused pass over zero-copy views
                views = {k: torch.from_numpy(slots[k].reshape(-1)) for k in rule.slots}
                flat_p, flat_g = torch.from_numpy(p.reshape(-1)), torch.from_numpy(g.reshape(-1))
                run_flat(rule, flat_p, flat_g, views, c, compiled=True)
            else:
                new_p, new_slots = _apply(rule, p, g, slots, c)
                p[...] = new_p
                for k, v in new_slots.items():
                    slots[k][...] = v
            for k, v in scalars.items():
                slots[k][...] = v
        self.state = State(steps, self.state.slots)

    def state_dict(self) -> dict[str, Any]:
        """A copy of the state: ``{"steps": [int per param], "slots": [dict of arrays]}``."""
        return {
            "steps": list(self.state.steps),
            "slots": [{k: v.copy() for k, v in s.items()} for s in self.state.slots],
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict`; shapes must match the parameters.

        A state saved before steps were counted per parameter (one ``"step"``) gives every
        parameter that count.
        """
        rule = self.transformation.rule
        if not isinstance(sd, dict) or "slots" not in sd or not ({"steps", "step"} & sd.keys()):
            raise ValueError("expected a state_dict() of this optimizer: {'steps', 'slots'}")
        if len(sd["slots"]) != len(self.params):
            raise ValueError(
                f"expected state for {len(self.params)} arrays, got {len(sd['slots'])}"
            )
        slots = []
        for i, (p, s) in enumerate(zip(self.params, sd["slots"], strict=True)):
            expected = {**rule.slot_shapes(p.shape), **dict.fromkeys(rule.scalar_names, ())}
            if not isinstance(s, dict) or s.keys() != expected.keys():
                held = sorted(s) if isinstance(s, dict) else type(s).__name__
                raise ValueError(
                    f"slots[{i}] holds {held}, but {rule.name} keeps {sorted(expected)}: "
                    "a state saved by another optimizer?"
                )
            loaded = {}
            for k, v in s.items():
                dtype = compute_dtype(p.dtype) if k in rule.scalar_names else p.dtype
                loaded[k] = np.array(v, dtype=dtype)
                if k in expected and loaded[k].shape != expected[k]:
                    raise ValueError(
                        f"state {k!r} has shape {loaded[k].shape}, expected {expected[k]} "
                        f"for a parameter of shape {p.shape}"
                    )
            slots.append(loaded)
        steps = sd["steps"] if "steps" in sd else [sd["step"]] * len(self.params)
        if len(steps) != len(self.params):
            raise ValueError(f"expected {len(self.params)} step counts, got {len(steps)}")
        self.state = State([int(t) for t in steps], slots)


class SGD(Optimizer):
    """In-place SGD on NumPy arrays (see :func:`sgd`)."""

    name = "sgd"


class Momentum(Optimizer):
    """In-place EMA-form momentum on NumPy arrays (see :func:`momentum`)."""

    name = "momentum"


class RMSprop(Optimizer):
    """In-place RMSProp on NumPy arrays (see :func:`rmsprop`)."""

    name = "rmsprop"


class Adagrad(Optimizer):
    """In-place Adagrad on NumPy arrays (see :func:`adagrad`)."""

    name = "adagrad"


class Adadelta(Optimizer):
    """In-place Adadelta on NumPy arrays (see :func:`adadelta`)."""

    name = "adadelta"


class Adamax(Optimizer):
    """In-place Adamax on NumPy arrays (see :func:`adamax`)."""

    name = "adamax"


class RAdam(Optimizer):
    """In-place RAdam on NumPy arrays (see :func:`radam`)."""

    name = "radam"


class Adam(Optimizer):
    """In-place Adam on NumPy arrays (see :func:`adam`)."""

    name = "adam"


class AdamW(Optimizer):
    """In-place AdamW on NumPy arrays (see :func:`adamw`)."""

    name = "adamw"


class NAdam(Optimizer):
    """In-place NAdam on NumPy arrays (see :func:`nadam`)."""

    name = "nadam"


class ASGD(Optimizer):
    """In-place ASGD on NumPy arrays (see :func:`asgd`)."""

    name = "asgd"


class Rprop(Optimizer):
    """In-place Rprop on NumPy arrays (see :func:`rprop`)."""

    name = "rprop"


class Adafactor(Optimizer):
    """In-place Adafactor on NumPy arrays (see :func:`adafactor`)."""

    name = "adafactor"


class Muon(Optimizer):
    """In-place Muon on NumPy arrays (see :func:`muon`)."""

    name = "muon"
