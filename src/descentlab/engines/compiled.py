"""The default fast engine: the rule compiled over chunks of tensors, where they already are.

Nothing is moved: parameters, gradients and state stay the tensors torch and autograd made.
Each parameter is seen through a 1-D view (``view(-1)`` shares its storage), and a chunk of
``k`` parameters is stepped by ONE call of a ``torch.compile``-d function that applies the
rule to each of the ``k`` tensors in turn, so Python pays one call per chunk, not one per
tensor and operation.

Why it is built this way:

* **Bounded compile cost.** The compiled function takes exactly ``k`` tensors with dynamic
  sizes, whatever the model: one graph per (rule, dtype, device, size class), compiled once
  per process on synthetic inputs. A partly filled last chunk is padded with tiny dummy
  tensors rather than compiled again.
* **No guards at run time.** Dynamo's per-call machinery (guards, unpacking the lists,
  reading each dynamic size) costs microseconds per tensor, more than the math of a small
  tensor. Dynamo traces once; the inductor-compiled graph is then called directly with its
  inputs gathered by one generated function. The host side only ever passes tensors it
  has checked itself: 1-D, contiguous, of the kernel's dtype and device, gradient and state
  shaped like the parameter, at least 2 elements (sizes 0 and 1 would be specialised).
  The synthetic inputs have pairwise different sizes, so the graph never assumes that two
  tensors of a chunk are the same size.
* **Per-parameter step counts.** Coefficients (lr, bias corrections...) arrive as one row
  per tensor, so parameters that have taken different numbers of steps share a chunk.
* **Two size classes.** Small tensors (fewer than ``policy.SMALL`` elements) are compiled with
  small size hints, so their loops run on one thread without a fork/join each; large ones
  with large hints, so their loops are split across threads.
"""

from __future__ import annotations

import itertools
import operator
import re
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch

from ..rules.base import Rule, advance
from . import background, policy
from .background import brief
from .eager import program
from .policy import (
    CHUNK,
    compute_dtype,
    eager_batch,
    eager_split,
    is_low_precision,
    size_class,
)
from .reference import apply_reference, compute, store_scalars, update_stats, write_back

_FLOAT = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


class KernelKey(NamedTuple):
    """What one compiled kernel is specialised to."""

    rule: Rule
    names: tuple[str, ...]  # coefficient names, in the order of the rows of ``cmat``
    dtype: torch.dtype
    device: torch.device
    cls: str  # size class: "small" or "large"
    step_dtype: torch.dtype
    measure: bool = False  # also return update_stats per tensor (telemetry's sampled steps)


_KERNELS: dict[KernelKey, Kernel] = {}
_FAILED: dict[KernelKey, str] = {}


compiles = 0  # number of kernels compiled in this process (observable by tests)


# What a graph input of a chunk function may be: a list element, or one of its sizes.
_SOURCE = re.compile(r"L\['cmat'\](\.size\(\)\[[01]\])?|L\['\w+'\](\[\d+\])+(\.size\(\)\[0\])?")


def _chunk_function(
    rule: Rule, names: tuple[str, ...], k: int, in_graph_steps: bool, measure: bool
) -> Any:
    slots = rule.slots

    def step_chunk(ps, gs, state_lists, steps, cmat):
        stats = []
        for i in range(k):
            if in_graph_steps:
                advance(steps[i])
            c = {n: cmat[i, j] for j, n in enumerate(names)}
            s = {name: state_lists[j][i] for j, name in enumerate(slots)}
            new_p, new_s = compute(rule, ps[i], gs[i], s, c)
            if measure:  # telemetry: sums over what the update reads anyway
                stats.append(update_stats(ps[i], new_p, gs[i]))
            write_back(ps[i], s, new_p, new_s)
        return torch.stack(stats) if measure else None

    # Dynamo keys its caches by code object: one per kernel keeps them apart.
    step_chunk.__code__ = step_chunk.__code__.replace(
        co_name=f"{rule.name}_chunk{k}{'_measured' * measure}_{len(_KERNELS)}"
    )
    return step_chunk


class Kernel:
    """One compiled chunk step: ``k`` tensors of one dtype, device and size class."""

    def __init__(self, key: KernelKey, loaded: background.Loaded | None = None) -> None:
        """Compile ``key`` (waits for the compiler, or loads from its cache), or run what a
        background thread ``loaded`` from the kernel file (see :mod:`.background`)."""
        rule, names, dtype, device, cls, step_dtype, measure = key
        self.k = CHUNK[cls]
        self.measure = measure
        # Step counters live on the CPU; a float64 one (float64 as the default dtype) enters
        # the graph as a host scalar whose in-place advance is lost: advanced outside.
        self.in_graph_steps = device.type == "cpu" and step_dtype != torch.float64
        self.direct: Callable[..., Any] | None = None
        self.sources: list[str] = []  # the graph inputs' names, in the graph's order
        slots = rule.slots

        def tensors(n: int, base: int) -> list[torch.Tensor]:
            return [torch.zeros(base + 7 * i + 3, dtype=dtype, device=device) for i in range(n)]

        if loaded is not None:
            call = loaded.call
            gather = _gatherer(loaded.sources)
            self.sources = list(loaded.sources)
            self.direct = lambda local: call(list(gather(local)))
        else:
            fn = torch.compile(
                _chunk_function(rule, names, self.k, self.in_graph_steps, measure),
                dynamic=True,
                fullgraph=True,
                backend=self._capture,
            )
            # Synthetic inputs: pairwise different sizes, hints typical of the class.
            base = 1000 if cls == "small" else 1 << 20
            steps = [torch.zeros((), dtype=step_dtype) for _ in range(self.k)]
            ps = tensors(self.k, base)
            gs = [torch.ones_like(p) for p in ps]
            state = [[torch.zeros_like(p) for p in ps] for _ in slots]
            cmat = torch.full((self.k, len(names)), 0.5, dtype=compute_dtype(dtype), device=device)
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch's compiler stack
                fn(ps, gs, state, steps, cmat)
            if self.direct is None:
                raise RuntimeError("torch.compile did not hand the graph to descentlab's backend")
        # Padding for a partly filled chunk: two elements each, never read back.
        pad = tensors(self.k, 2)
        self.pad: tuple[Any, ...] = (
            pad,
            [torch.zeros_like(p) for p in pad],
            [[torch.zeros_like(p) for p in pad] for _ in slots],
            [torch.zeros((), dtype=step_dtype) for _ in range(self.k)],
        )

    def __call__(
        self,
        ps: list[torch.Tensor],
        gs: list[torch.Tensor],
        state: list[list[torch.Tensor]],
        steps: list[torch.Tensor],
        cmat: torch.Tensor,
    ) -> torch.Tensor | None:
        """Step ``len(ps) <= k`` tensors; ``cmat`` has ``k`` rows (padding rows are unused).

        A measuring kernel returns ``k`` rows of :func:`update_stats` (padding rows last)."""
        n = len(ps)
        if n < self.k:
            pp, pg, pst, psteps = self.pad
            ps, gs = ps + pp[n:], gs + pg[n:]
            state = [s + extra[n:] for s, extra in zip(state, pst, strict=True)]
            steps = steps + psteps[n:]
        if not self.in_graph_steps:  # ``advance`` of each counter, in one launch
            torch._foreach_add_(steps[:n], 1.0)
        assert self.direct is not None
        out = self.direct({"ps": ps, "gs": gs, "state_lists": state, "steps": steps, "cmat": cmat})
        return out[0] if self.measure else None

    def _capture(self, gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
        """Backend: compile the graph with inductor and keep a direct way to call it.

        Dynamo's per-call machinery (frame evaluation, unpacking the lists, reading every
        dynamic size through a wrapped call) costs more than the math of a small tensor. The
        graph's inputs are known by their sources (``L['ps'][3]``, ``L['ps'][3].size()[0]``),
        so one generated function gathers them straight from the arguments.
        """
        from torch._inductor.compile_fx import compile_fx

        # The inputs' names, read before inductor sees the graph (it may rewrite it).
        sources = [_source_name(node) for node in gm.graph.nodes if node.op == "placeholder"]
        gather = _gatherer(sources)
        compiled: Any = compile_fx(gm, example_inputs, config_patches={"size_asserts": False})

        def direct(local: dict[str, Any]) -> Any:
            return compiled(*gather(local))

        self.direct = direct
        self.sources = sources
        return compiled


def _gatherer(sources: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """One generated function that gathers a graph's inputs, known by their sources
    (``L['ps'][3]``, ``L['ps'][3].size()[0]``), straight from the chunk's arguments."""
    if not all(isinstance(src, str) and _SOURCE.fullmatch(src) for src in sources):
        raise RuntimeError(f"unexpected graph inputs {sources}")
    # numel() for size()[0]: the same for the 1-D inputs the graph was traced with, and
    # the flat length of an N-d contiguous gradient passed as it is.
    exprs = [
        src if src.startswith("L['cmat']") else src.replace(".size()[0]", ".numel()")
        for src in sources
    ]
    gather: Callable[[dict[str, Any]], tuple[Any, ...]] = eval(
        f"lambda L: ({', '.join(exprs)},)"  # only the names matched above
    )
    return gather


def _source_name(node: torch.fx.Node) -> str:
    """The source of a graph input (``L['ps'][3]``): an attribute in recent torch, a method
    in torch releases before late 2025."""
    name = node.meta["grapharg"].source.name
    return str(name() if callable(name) else name)


def kernel(key: KernelKey, loaded: background.Loaded | None = None) -> Kernel | None:
    """The compiled kernel for ``key`` (built from what a background thread ``loaded``, if
    given), or None (one warning per process) if compiling fails."""
    global compiles
    if key in _FAILED:
        return None
    if key not in _KERNELS:
        try:
            _KERNELS[key] = Kernel(key, loaded)
            compiles += 1
        except Exception as exc:  # no C++ compiler, unsupported device...
            first = not _FAILED
            _FAILED[key] = f"{exc!s:.300}"
            if first:  # one warning per process; _FAILED keeps every reason
                warnings.warn(
                    f"descentlab: torch.compile is unavailable for rule {key.rule.name!r} on "
                    f"{key.dtype} {key.device} ({brief(exc)}); the eager engine runs the same "
                    "rule instead",
                    RuntimeWarning,
                    stacklevel=4,
                )
            return None
    return _KERNELS[key]


def _background_ready(key: KernelKey) -> bool:
    """Is the compiled kernel for ``key`` at hand (``engine="auto"``)? Takes it, between two
    steps, once a background thread has loaded it (or, where there is no kernel file, loads
    it from the compiler cache the background process filled); False while that work goes
    on, before it starts, and for good if it failed (one warning)."""
    if key in _KERNELS:
        return True
    if key in _FAILED:
        return False
    status = background.finished(key)
    if status is None:
        return False
    ok, why, loaded = status
    if not ok:
        _give_up(key, why)
        return False
    built = kernel(key, loaded)  # no C++ compiler runs; without ``loaded`` it waits for a load
    if built is not None and loaded is None:
        background.record(key)
    return built is not None


def _give_up(key: KernelKey, why: str) -> None:
    _FAILED[key] = why
    warnings.warn(
        f"descentlab: compiling rule {key.rule.name!r} for {key.dtype} {key.device} in the "
        f"background failed ({why}); the eager engine goes on running the same rule",
        RuntimeWarning,
        stacklevel=6,
    )


def _fail(key: KernelKey, exc: Exception) -> None:
    """Retire a kernel that raised when called: warn once, never call it again."""
    _KERNELS.pop(key, None)
    first = not _FAILED
    _FAILED[key] = f"{exc!s:.300}"
    if first:
        warnings.warn(
            f"descentlab: a compiled kernel for rule {key.rule.name!r} on {key.dtype} "
            f"{key.device} failed ({brief(exc)}); the reference engine finishes this step "
            "and the eager engine takes the next ones, running the same rule",
            RuntimeWarning,
            stacklevel=5,
        )


_EAGER_FAILED: dict[KernelKey, str] = {}


_EAGER_CHECKED: set[KernelKey] = set()


def eager_program(key: KernelKey) -> Any:
    """The eager engine's program for ``key`` (its ``run`` over lists and ``run_one`` over
    one tensor: see :mod:`descentlab.engines.eager`), or None (one warning per process) if
    the rule cannot be lowered."""
    if key in _EAGER_FAILED:
        return None
    try:
        return program(key.rule, key.names)
    except Exception as exc:
        _fail_eager(key, exc)
        return None


def _fail_eager(key: KernelKey, exc: Exception) -> None:
    first = not _EAGER_FAILED
    _EAGER_FAILED[key] = f"{exc!s:.300}"
    if first:
        warnings.warn(
            f"descentlab: the eager engine cannot run rule {key.rule.name!r} on {key.dtype} "
            f"{key.device} ({brief(exc)}); the reference engine runs the same rule one tensor "
            "at a time instead",
            RuntimeWarning,
            stacklevel=5,
        )


_TRUSTED: set[Any] = set()  # kernel keys (compiled, and ("eager", key)) checked in this process


class _Untrusted(RuntimeError):
    """A new kernel's first result differs from the reference engine's."""


_CHECK_ELEMENTS = 1 << 14  # elements of each tensor a new kernel is checked on
_CHECK_TOL = {torch.float64: 1e-10, torch.float32: 1e-4}  # 16-bit: 2e-2 (one rounding)


def disagreement(
    rule: Rule,
    ps: list[torch.Tensor],
    gs: list[torch.Tensor],
    slots: list[list[torch.Tensor]],
    coefficients: list[dict[str, float]],
    got_ps: list[torch.Tensor],
    got_slots: list[list[torch.Tensor]],
) -> str | None:
    """Why a new kernel's step of ``ps`` differs from the reference engine's, or None.

    A kernel (compiled, or the eager engine's lowering) is trusted only after its first
    call, on copies of the step's real tensors (valid state, real coefficients), matched
    the reference to round-off: relative to each tensor's largest value, NaNs where the
    reference has them.
    """
    for i, (p, g) in enumerate(zip(ps, gs, strict=True)):
        state = {name: lst[i] for name, lst in zip(rule.slots, slots, strict=True)}
        new_p, new_state = compute(rule, p, g, state, coefficients[i])
        pairs = [("parameter", new_p, got_ps[i])]
        pairs += [(name, new_state[name], got_slots[j][i]) for j, name in enumerate(rule.slots)]
        for what, want, got in pairs:
            want = want.to(got.dtype).double()
            got = got.double()
            if not torch.equal(want.isnan(), got.isnan()):
                return f"{what}: NaN where the reference has none (or the reverse)"
            ok = ~want.isnan()
            scale = float(want[ok].abs().max()) if bool(ok.any()) else 0.0
            err = float((want[ok] - got[ok]).abs().max()) if bool(ok.any()) else 0.0
            tol = _CHECK_TOL.get(p.dtype, 2e-2)
            if err > tol * max(scale, 1e-30) and not (scale == 0.0 and err == 0.0):
                return f"{what} off by {err:.3g} (scale {scale:.3g}, tolerance {tol:g})"
    return None


def eligible(p: torch.Tensor) -> bool:
    """Can this parameter be stepped by the compiled engine (checked once per parameter)?"""
    return (
        type(p.data) is torch.Tensor  # no DTensor or other subclass
        and p.dtype in _FLOAT
        and p.layout == torch.strided
        and p.is_contiguous()
        and p.numel() >= 2
    )


def overlapping(params: Sequence[torch.Tensor]) -> set[int]:
    """Indices of parameters whose memory overlaps another's (duplicates, ``.data`` ties).

    torch.optim steps them one after another, each step reading what the previous wrote;
    the reference engine does the same, so they are left to it.
    """
    spans = sorted(
        (str(p.device), p.data_ptr(), p.data_ptr() + p.numel() * p.element_size(), i)
        for i, p in enumerate(params)
        if p.numel() > 0
    )
    out: set[int] = set()
    reach: tuple[str, int, int] | None = None  # (device, furthest end so far, its index)
    for device, start, end, i in spans:
        if reach is not None and reach[0] == device and start < reach[1]:
            out.update((i, reach[2]))
        if reach is None or reach[0] != device or end > reach[1]:
            reach = (device, end, i)
    return out


_GRAD = operator.attrgetter("grad")
_DTYPE = operator.attrgetter("dtype")
_DEVICE = operator.attrgetter("device")
_VERSION = operator.attrgetter("_version")
_NUMEL: Callable[[Any], int] = torch.Tensor.numel  # unbound: twice a methodcaller's speed
_STEP = operator.itemgetter("step")
_CONTIGUOUS: Callable[[Any], bool] = torch.Tensor.is_contiguous


class GroupPlan:
    """How one param group is stepped by the compiled or the eager engine (``mode``); rebuilt
    when the group changes.

    ``eligible`` are the parameters the engine may take (see :func:`eligible`, minus any that
    overlap another); the others always go to the reference engine. The *active* set is the
    eligible parameters that had a usable gradient at the last step; while it stays the same
    and no state tensor or parameter storage was replaced, a step validates everything with a
    few ``map`` calls and reuses the cached 1-D views (the steady path).

    ``prepare(p)`` returns the state of ``p`` and the dict holding its ``step`` counter: the
    state itself, or a private one for optimizers whose state has no ``step`` (SGD).
    """

    def __init__(
        self,
        members: list[torch.Tensor],
        rule: Rule,
        scalar_dtype: torch.dtype,
        mode: str = "compiled",
        first_step_only: bool = False,
    ) -> None:
        self.members = members
        self.mode = mode  # "compiled", "eager" or "auto" (eager until compiled in background)
        # The step counters only tell a parameter's first step from the others (SGD's
        # private ones: its rule asks whether the momentum buffer is new): the eager engine
        # then leaves a counter that is past its first step as it is (advancing 74 0-dim
        # tensors was 0.3 ms of a 6.4 ms step, as much as SGD-momentum's eager step lost
        # against torch's for-loop).
        self.first_step_only = first_step_only
        self._held: set[int] = set()  # counters this step left as they were (see above)
        self.eager_count = 0  # parameters the last step gave the eager engine
        self.rule = rule
        self.scalar_dtype = scalar_dtype
        chosen = {i for i, p in enumerate(members) if eligible(p)}
        self.eligible = [p for i, p in enumerate(members) if i in chosen]
        self.rest = [p for i, p in enumerate(members) if i not in chosen]
        self.numel = sum(p.numel() for p in self.eligible)
        self._steady = False
        self._mask: list[bool] = []
        self.extra: list[torch.Tensor] = []
        self.retry: list[torch.Tensor] = []

    def same_group(self, members: list[torch.Tensor], rule: Rule) -> bool:
        return (
            (rule is self.rule or rule == self.rule)
            and len(members) == len(self.members)
            and all(map(operator.is_, members, self.members))
        )

    def step(
        self,
        state: Any,
        hp: Mapping[str, float],
        prepare: Callable[[torch.Tensor], tuple[dict[str, Any], dict[str, Any]]],
        measure: bool = False,
    ) -> tuple[int, list[torch.Tensor]]:
        """Step the active parameters; returns (how many were stepped, what the reference must
        step: parameters outside the plan, or whose gradient or state the kernel cannot take).

        With ``measure``, ``measured`` then holds ``(param, update_stats row)`` per parameter
        stepped here.
        """
        self.measured: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.eager_count = 0
        grads = list(map(_GRAD, self.eligible))
        mask = list(map(operator.is_not, grads, itertools.repeat(None)))
        if (
            self._steady
            and mask == self._mask
            and not self._retry_now()
            and self._still_valid(state, grads)
        ):
            active_grads = (
                list(map(_GRAD, self.active))  # some go to the reference
                if self.extra
                else list(itertools.compress(grads, mask))
            )
        else:
            active_grads = self._rebuild(state, grads, mask, prepare)
        extra = self.extra
        if not self.active:
            return 0, self.rest + extra
        if not self._run(hp, active_grads, measure):
            # Compiling is unavailable (one warning was given): the reference takes it all.
            self.eligible, self.rest, self._steady = [], list(self.members), False
            return 0, self.rest
        left = self.leftover  # a kernel failed mid-step: the rest of the step is the reference's
        return len(self.active) - len(left), self.rest + extra + left

    def _retry_now(self) -> bool:
        """Has a parameter left to the reference for its gradient got a usable one again?"""
        return any(p.grad is not None and self._grad_ok(p, p.grad) for p in self.retry)

    def _still_valid(self, state: Any, grads: list[torch.Tensor | None]) -> bool:
        """Nothing the kernel relies on changed since the last step (a few ``map`` calls).

        A gradient's dtype, size and device are those of its parameter unless someone
        swapped ``grad.data``; they are compared anyway, as the kernel trusts them.
        """
        act = self.active
        g = list(map(_GRAD, act)) if self.extra else list(itertools.compress(grads, self._mask))
        if (
            list(map(torch.Tensor.data_ptr, act)) != self.ptrs
            or list(map(_DTYPE, g)) != self.dtypes
            or list(map(_DEVICE, g)) != self.devices
            or list(map(_NUMEL, g)) != self.numels
            or not all(map(_CONTIGUOUS, g))
            or not all(map(operator.is_, map(type, g), itertools.repeat(torch.Tensor)))
        ):
            return False
        # Every state dict, in order (load_state_dict, ``opt.state[p] = {}``): no hashing.
        if len(state) != len(self.state_values) or not all(
            map(operator.is_, state.values(), self.state_values)
        ):
            return False
        states = self.states
        try:
            # A private counter's home (SGD's) is replaced only with the whole state
            # (load_state_dict), which the checks above see; a stored one may be by itself.
            if not self.first_step_only and not all(
                map(operator.is_, map(_STEP, self.homes), self.steps)
            ):
                return False
            for name, objs in zip(self.rule.slots, self.slot_objs, strict=True):
                if not all(map(operator.is_, map(operator.itemgetter(name), states), objs)):
                    return False
        except KeyError:
            return False
        return True

    def _rebuild(
        self,
        state: Any,
        grads: list[torch.Tensor | None],
        mask: list[bool],
        prepare: Callable[[torch.Tensor], tuple[dict[str, Any], dict[str, Any]]],
    ) -> list[torch.Tensor]:
        """The slow path: check every parameter with a gradient and cache its views.

        Sets ``active`` (stepped here) and ``extra`` (left to the reference, for as long as
        the steady path holds); returns the active parameters' gradients.
        """
        slots = self.rule.slots
        self.active, self.ptrs, self.dtypes, self.devices, self.numels = [], [], [], [], []
        self.states, self.homes, self.steps, self.p_views = [], [], [], []
        self.slot_objs: list[list[torch.Tensor]] = [[] for _ in slots]
        self.slot_views: list[list[torch.Tensor]] = [[] for _ in slots]
        extra, retry, active_grads = [], [], []
        # Memory shared by two parameters (listed twice, tied through .data, now or since
        # the last step): torch steps them one after the other; so does the reference.
        present = [p for p, g in zip(self.eligible, grads, strict=True) if g is not None]
        shared = {id(present[i]) for i in overlapping(present)}
        for p, g in zip(self.eligible, grads, strict=True):
            if g is None:
                continue
            if id(p) in shared or not eligible(p):
                extra.append(p)
                continue
            if not self._grad_ok(p, g):
                extra.append(p)
                retry.append(p)  # checked again at every step: back as soon as it can
                continue
            s, home = prepare(p)
            if not self._state_ok(p, s, home):
                extra.append(p)
                continue
            self.active.append(p)
            active_grads.append(g)
            self.ptrs.append(p.data_ptr())
            self.dtypes.append(g.dtype)
            self.devices.append(g.device)
            self.numels.append(g.numel())
            self.states.append(s)
            self.homes.append(home)
            self.steps.append(home["step"])
            self.p_views.append(p.detach().view(-1))
            for name, objs, views in zip(slots, self.slot_objs, self.slot_views, strict=True):
                objs.append(s[name])
                views.append(s[name].view(-1))
        self._mask = mask
        self.extra, self.retry = extra, retry
        self.state_values = list(state.values())
        self._counted: tuple[list[int], list[float]] | None = None  # see _step_counts
        self._quiet = False  # see the end of _run
        self._batches: dict[KernelKey, list[_Batch]] = {}  # see _run_eager
        self._keys: dict[tuple[tuple[str, ...], bool], dict[Any, KernelKey]] = {}  # see _run
        self._steady = True
        self.order: dict[tuple[torch.dtype, torch.device, str], list[int]] = {}
        for i, p in enumerate(self.active):
            key = (p.dtype, p.device, size_class(p.numel()))
            self.order.setdefault(key, []).append(i)
        return active_grads

    def _grad_ok(self, p: torch.Tensor, g: torch.Tensor) -> bool:
        return (
            type(g) is torch.Tensor
            and g.layout == torch.strided
            and g.dtype == p.dtype
            and g.device == p.device
            and g.shape == p.shape
            and g.is_contiguous()
        )

    def _state_ok(self, p: torch.Tensor, s: Mapping[str, Any], home: Mapping[str, Any]) -> bool:
        step = home.get("step")
        if not (
            type(step) is torch.Tensor
            and step.dim() == 0
            and step.dtype == self.scalar_dtype
            and step.device.type == "cpu"
        ):
            return False
        for name in self.rule.scalar_names:
            t = s.get(name)
            if not (type(t) is torch.Tensor and t.dim() == 0):
                return False
        for name in self.rule.slots:
            t = s.get(name)
            if not (
                type(t) is torch.Tensor
                and t.dtype == p.dtype
                and t.device == p.device
                and t.shape == p.shape
                and t.is_contiguous()
            ):
                return False
        return True

    def _step_counts(self) -> list[float]:
        """Every active parameter's step count before this step.

        Read from the step tensors once (``torch.stack``), then mirrored on the host: the
        kernel adds 1 to each, and a tensor whose version counter moved otherwise (someone
        wrote to it) makes the next step read them all again.
        """
        if self._counted is not None and (
            self._quiet or list(map(_VERSION, self.steps)) == self._counted[0]
        ):
            return self._counted[1]
        if len(self.steps) > 1:
            return torch.stack(self.steps).tolist()
        return [float(self.steps[0])]

    def _run(self, hp: Mapping[str, float], grads: list[torch.Tensor], measure: bool) -> bool:
        """Step every active parameter; False (nothing stepped) if a kernel is unavailable."""
        before = self._step_counts()
        self._held = set()
        rows: dict[Any, list[float]] = {}
        names: tuple[str, ...] = ()
        if self.rule.scalar_names:
            # Scalars of the state (NAdam's mu_product): advanced on the host, parameter by
            # parameter as torch does; rows are shared by parameters with equal coefficients.
            # Nothing is written before every kernel is at hand (see store_scalars below).
            keys: list[Any] = []
            advanced: list[dict[str, Any]] = []
            for t, s in zip(before, self.states, strict=True):
                c, new = self.rule.begin_step(
                    hp, int(t) + 1, {k: s[k] for k in self.rule.scalar_names}
                )
                names = names or tuple(c)
                row = tuple(c[n] for n in names)
                rows.setdefault(row, list(row))
                keys.append(row)
                advanced.append(new)
        else:
            for t in set(before):
                c = self.rule.coefficients(hp, int(t) + 1)
                names = names or tuple(c)
                rows[t] = [c[n] for n in names]
            keys = before
            advanced = []
        kernel_keys = self._keys.get((names, measure))
        if kernel_keys is None:  # kept while the plan holds
            kernel_keys = self._keys[names, measure] = {
                key: KernelKey(self.rule, names, *key, self.scalar_dtype, measure)
                for key in self.order
            }
        kernels: dict[Any, Kernel | None] = {}
        for key, kk in kernel_keys.items():
            if self.mode == "eager" or (self.mode == "auto" and not _background_ready(kk)):
                kernels[key] = None  # the eager engine steps it (see _run_eager)
                continue
            kernels[key] = kernel(kk)  # None where compiling is unavailable: eager instead
        self.leftover: list[torch.Tensor] = []
        order = list(self.order.items())
        for position, (key, idx) in enumerate(order):
            kern = kernels[key]
            if kern is None:
                started = time.perf_counter()
                left = self._run_eager(kernel_keys[key], idx, grads, rows, keys, before, advanced)
                if self.mode == "auto" and kernel_keys[key] not in _FAILED:
                    why = background.spent(kernel_keys[key], time.perf_counter() - started)
                    if why is not None:
                        _give_up(kernel_keys[key], why)
                if left:
                    self._leave_rest(order, position, left)
                    return True
                continue
            k, dtype, device = kern.k, key[0], key[1]
            padded = -(-len(idx) // k) * k
            cdtype = compute_dtype(dtype)
            if len(rows) == 1:
                first = torch.tensor(rows[keys[0]], dtype=cdtype)
                cmat = first.expand(padded, len(names)).contiguous()
            else:
                table = [rows[keys[i]] for i in idx]
                table += [table[-1]] * (padded - len(idx))
                cmat = torch.tensor(table, dtype=cdtype)
            if device.type != "cpu":
                cmat = cmat.to(device)
            get = _picker(idx)
            # Gradients go in as autograd made them (contiguous, checked): the kernel reads
            # numel() elements from their data, so no 1-D view is needed.
            ps, gs, steps = get(self.p_views), get(grads), get(self.steps)
            sl = [get(v) for v in self.slot_views]
            if kernel_keys[key] not in _TRUSTED:
                why = self._check_kernel(kern, idx[:k], ps[:k], gs[:k], sl, steps[:k], cmat, names)
                if why is not None:  # never trusted: the eager engine steps it, now and later
                    _fail(kernel_keys[key], RuntimeError(f"differs from the reference: {why}"))
                    left = self._run_eager(
                        kernel_keys[key], idx, grads, rows, keys, before, advanced
                    )
                    if left:
                        self._leave_rest(order, position, left)
                        return True
                    continue
                _TRUSTED.add(kernel_keys[key])
            for a in range(0, len(idx), k):
                b = a + k
                try:
                    stats = kern(ps[a:b], gs[a:b], [v[a:b] for v in sl], steps[a:b], cmat[a:b])
                except Exception as exc:  # a kernel built earlier that now fails
                    # All or nothing per parameter: this chunk's counters go back (a kernel
                    # that raises has not computed), and this chunk and every one after it
                    # are left to the reference engine for this step.
                    for i in idx[a:b]:
                        self.steps[i].fill_(before[i])
                    later = [i for _, rest in order[position + 1 :] for i in rest]
                    self.leftover = [self.active[i] for i in (*idx[a:], *later)]
                    _fail(kernel_keys[key], exc)
                    self._counted = None
                    self._steady = False
                    return True
                if self.rule.scalar_names:  # stored once the chunk has stepped
                    for i in idx[a:b]:
                        store_scalars(self.states[i], advanced[i])
                if stats is not None:
                    chunk = [self.active[i] for i in idx[a:b]]
                    self.measured.extend(zip(chunk, stats.unbind(0), strict=False))
        held = self._held
        # Private counters all past their first step, none written (the eager engine held
        # them all): the mirror stands, and the next step reads no counter either. Only
        # this plan's engines write them while it holds (another engine stepping one only
        # advances it, which changes nothing for a rule that asks "first step or not").
        self._quiet = self.first_step_only and len(held) == len(before)
        if self._quiet and self._counted is not None and self._counted[1] is before:
            return True
        self._counted = (
            list(map(_VERSION, self.steps)),
            list(before)
            if len(held) == len(before)
            else [t if i in held else t + 1.0 for i, t in enumerate(before)],
        )
        return True

    def _leave_rest(self, order: list[Any], position: int, idx: list[int]) -> None:
        """Hand the parameters ``idx`` and those of every later kernel to the reference
        engine for this step (``leftover``); the next step checks everything again."""
        later = [i for _, rest in order[position + 1 :] for i in rest]
        self.leftover = [self.active[i] for i in (*idx, *later)]
        self._counted = None
        self._steady = False

    def _check_kernel(
        self,
        kern: Kernel,
        idx: list[int],
        ps: list[torch.Tensor],
        gs: list[torch.Tensor],
        sl: list[list[torch.Tensor]],
        steps: list[torch.Tensor],
        cmat: torch.Tensor,
        names: tuple[str, ...],
    ) -> str | None:
        """Run a new compiled kernel once on copies of its first chunk; see
        :func:`disagreement`. A kernel that raises here is not trusted either."""
        n, m = len(ps), _CHECK_ELEMENTS
        ps = [p[:m] for p in ps]  # a prefix of each tensor: the check costs no full copy
        gs = [g.view(-1)[:m] for g in gs[:n]]
        sl = [[s[:m] for s in lst[:n]] for lst in sl]
        cps = [p.clone() for p in ps]
        csl = [[s.clone() for s in lst] for lst in sl]
        try:
            kern(cps, gs, csl, [t.clone() for t in steps], cmat[:n])
        except Exception as exc:  # a kernel that fails is not trusted
            return f"raised {brief(exc)}"
        coefficients = [dict(zip(names, row, strict=True)) for row in cmat[:n].tolist()]
        return disagreement(self.rule, ps, gs, sl, coefficients, cps, csl)

    def _check_eager(
        self,
        prog: Any,
        ps: list[torch.Tensor],
        gs: list[torch.Tensor],
        sl: list[list[torch.Tensor]],
        row: Sequence[float],
        names: tuple[str, ...],
    ) -> str | None:
        """The eager engine's lowerings of a rule, over lists and over one tensor, each run
        once on copies (see :func:`disagreement`)."""
        why = self._check_lowering(prog.run, ps, gs, sl, row, names)
        if why is not None:
            return why

        def one(P: Any, G: Any, S: Any, C: Any) -> None:
            prog.run_one(P[0], G[0], [s[0] for s in S], C)

        why = self._check_lowering(one, ps[:1], gs[:1], [lst[:1] for lst in sl], row, names)
        return None if why is None else f"its per-tensor form {why}"

    def _check_lowering(
        self,
        run: Callable[..., None],
        ps: list[torch.Tensor],
        gs: list[torch.Tensor],
        sl: list[list[torch.Tensor]],
        row: Sequence[float],
        names: tuple[str, ...],
    ) -> str | None:
        """One lowering ``run`` (the list form's signature) run once on copies of the first
        elements of the tensors, against the reference (see :func:`disagreement`)."""
        m = _CHECK_ELEMENTS
        ps, gs = [p.reshape(-1)[:m] for p in ps], [g.reshape(-1)[:m] for g in gs]
        sl = [[s.reshape(-1)[:m] for s in lst] for lst in sl]
        cps = [p.clone() for p in ps]
        csl = [[s.clone() for s in lst] for lst in sl]
        try:
            run(cps, gs, csl, row)
        except Exception as exc:  # a lowering that fails is not trusted
            return f"raised {brief(exc)}"
        coefficients = [dict(zip(names, row, strict=True))] * len(ps)
        return disagreement(self.rule, ps, gs, sl, coefficients, cps, csl)

    def _make_batches(self, kk: KernelKey, idx: list[int], keys: list[Any]) -> list[_Batch]:
        """The eager engine's calls for the parameters ``idx``: one per set of equal
        coefficients and per ``policy.eager_batch`` elements.

        A tensor of more than ``policy.eager_split`` elements is cut into pieces of
        ``policy.EAGER_PIECE`` elements (1-D views), each a call of its own, its pieces in
        consecutive calls: every operation of the rule then runs while the piece is in the
        core's cache, and a temporary is the size of a piece (see the policy). Not on a
        measured step, whose figures are per parameter."""
        by_row: dict[Any, list[_Batch]] = {}
        open_: dict[Any, tuple[list[int], int]] = {}  # the row's batch being filled
        limit, above, piece = eager_batch(kk.device), eager_split(kk.device), policy.EAGER_PIECE
        if above is None or kk.measure:
            above = sys.maxsize

        def close(row: Any) -> None:
            members, _ = open_.pop(row, ([], 0))
            if members:
                by_row.setdefault(row, []).append(
                    _Batch(
                        members,
                        [self.active[i] for i in members],  # the tensors as they are
                        [[objs[i] for i in members] for objs in self.slot_objs],
                    )
                )

        for i in idx:
            row, n = keys[i], self.numels[i]
            if n > above:
                close(row)
                pieces = by_row.setdefault(row, [])
                for a in range(0, n, piece):
                    b = min(a + piece, n)
                    pieces.append(
                        _Batch(
                            [i],
                            [self.p_views[i][a:b]],
                            [[views[i][a:b]] for views in self.slot_views],
                            piece=(a, b, b == n),
                        )
                    )
                continue
            members, filled = open_.get(row, ([], 0))
            if members and filled + n > limit:
                close(row)
                members, filled = [], 0
            members.append(i)
            open_[row] = (members, filled + n)
        for row in list(open_):
            close(row)
        return [batch for batches in by_row.values() for batch in batches]

    def _run_eager(
        self,
        kk: KernelKey,
        idx: list[int],
        grads: list[torch.Tensor],
        rows: Mapping[Any, list[float]],
        keys: list[Any],
        before: list[float],
        advanced: list[dict[str, Any]],
    ) -> list[int]:
        """Step the parameters ``idx`` of one dtype and device with the eager engine, one
        call per set of equal coefficients; returns those it did not step (none, unless a
        call raised: then that call's parameters and the later ones are left untouched,
        their counters put back, for the reference engine to step; a cut tensor whose
        first pieces had stepped is finished here, piece by piece (:meth:`_finish_pieces`);
        every parameter takes exactly one step)."""
        prog = eager_program(kk)
        if prog is None:
            return list(idx)
        run, run_one = prog.run, prog.run_one
        # One call per set of equal coefficients and per policy.eager_batch elements: on a
        # CPU the call's operations run while its tensors are in cache, and everywhere its
        # temporaries (two or three, each the size of its tensors) stay bounded.
        # The batches and their tensor lists are kept while the plan holds (the steady path)
        # and every parameter has the same coefficients: then a step only gathers gradients.
        one_row = len(rows) == 1
        batches = self._batches.get(kk) if one_row else None
        if batches is None:
            batches = self._make_batches(kk, idx, keys)
            if one_row:
                self._batches[kk] = batches
        low = is_low_precision(kk.dtype)
        wide = compute_dtype(kk.dtype)
        position = 0
        # every counter advanced by one call (SGD's private ones are 0-dim tensors: a call
        # per batch cost more than its arithmetic); those of calls that do not run go back
        if self.first_step_only:
            if min(before) >= 1.0:  # every counter is past its first step (the usual case)
                self._held.update(idx)
            else:
                fresh = [i for i in idx if before[i] < 1.0]
                self._held.update(i for i in idx if before[i] >= 1.0)
                if fresh:
                    torch._foreach_add_([self.steps[i] for i in fresh], 1.0)
        else:
            torch._foreach_add_([self.steps[i] for i in idx], 1.0)
        scalars, measure = self.rule.scalar_names, kk.measure
        trusted = ("eager", kk) in _TRUSTED
        try:
            for position, batch in enumerate(batches):  # noqa: B007 (read after a failure)
                members, ps, sl = batch.members, batch.params, batch.slots
                row = keys[members[0]]
                gs = batch.gather(grads)
                if not trusted:  # its first call: checked on copies first
                    few = slice(0, 4)
                    if low:
                        why = self._check_eager(
                            prog,
                            [p.to(wide) for p in ps[few]],
                            [g.to(wide) for g in gs[few]],
                            [[s.to(wide) for s in lst[few]] for lst in sl],
                            rows[row],
                            kk.names,
                        )
                    else:
                        why = self._check_eager(
                            prog, ps[few], gs[few], [lst[few] for lst in sl], rows[row], kk.names
                        )
                    if why is not None:
                        raise _Untrusted(f"differs from the reference: {why}")
                    _TRUSTED.add(("eager", kk))
                    trusted = True
                olds = [p.clone() for p in ps] if measure else None
                if low:  # computed in float32, rounded once (as the reference does)
                    ws, wg = [p.to(wide) for p in ps], [g.to(wide) for g in gs]
                    wsl = [[s.to(wide) for s in lst] for lst in sl]
                    run(ws, wg, wsl, rows[row])
                    torch._foreach_copy_(ps, ws)
                    for lst, wlst in zip(sl, wsl, strict=True):
                        torch._foreach_copy_(lst, wlst)
                elif batch.one_slots is not None:  # one tensor, or a piece of one
                    run_one(ps[0], gs[0], batch.one_slots, rows[row])
                else:
                    run(ps, gs, sl, rows[row])
                if scalars and batch.last:
                    for i in members:
                        store_scalars(self.states[i], advanced[i])
                if olds is not None:
                    self.measured.extend(
                        (self.active[i], update_stats(o, p, g))
                        for i, o, p, g in zip(members, olds, ps, gs, strict=True)
                    )
        except Exception as exc:
            rest = batches[position:]
            failed = rest[0].piece
            finish = rest[0].members[0] if failed is not None and failed[0] > 0 else None
            if finish is not None:  # the parameter's first pieces have stepped: the rest too
                self._finish_pieces(finish, rest, grads, rows[keys[finish]], kk.names)
                if scalars:
                    store_scalars(self.states[finish], advanced[finish])
            left = list(dict.fromkeys(i for b in rest for i in b.members if i != finish))
            for i in left:
                self.steps[i].fill_(before[i])
            self.eager_count += len(idx) - len(left)
            _fail_eager(kk, exc)
            return left
        self.eager_count += len(idx)
        return []

    def _finish_pieces(
        self,
        i: int,
        rest: list[_Batch],
        grads: list[torch.Tensor],
        row: Sequence[float],
        names: tuple[str, ...],
    ) -> None:
        """Step the pieces of parameter ``i`` that lead ``rest`` with the reference engine,
        piece by piece (the rule is element-wise: a piece steps as the whole would), so that
        a call failing in the middle of a parameter still leaves it one whole step."""
        c = dict(zip(names, row, strict=True))
        g = grads[i].view(-1)
        for batch in rest:
            if batch.piece is None or batch.members[0] != i:
                break
            a, b, _ = batch.piece
            slots = zip(self.rule.slots, self.slot_views, strict=True)
            state = {name: views[i][a:b] for name, views in slots}
            apply_reference(self.rule, self.p_views[i][a:b], g[a:b], state, c)


class _Batch:
    """One call of the eager engine: its parameters (by index in the plan's active list),
    their tensors and slot tensors, and a fast gatherer of their gradients; or one piece
    ``(start, end, last)`` of a single parameter's elements (1-D views)."""

    def __init__(
        self,
        members: list[int],
        params: list[torch.Tensor],
        slots: list[list[torch.Tensor]],
        piece: tuple[int, int, bool] | None = None,
    ) -> None:
        self.members, self.params, self.slots, self.piece = members, params, slots, piece
        self.last = piece is None or piece[2]  # the parameter's last call of the step
        # A call of one tensor runs the program's per-tensor form with these slot tensors
        # (a 16-bit one runs the list form on its float32 copies, as every 16-bit call).
        self.one_slots = [lst[0] for lst in slots] if len(members) == 1 else None
        if piece is None:
            self.gather = _picker(members)
        else:
            i, (a, b, _) = members[0], piece
            self.gather = lambda xs: [xs[i].view(-1)[a:b]]


def _picker(idx: list[int]) -> Callable[[list[Any]], list[Any]]:
    """``xs -> [xs[i] for i in idx]``, fast when ``idx`` is everything."""
    if idx == list(range(len(idx))):
        n = len(idx)
        return lambda xs: xs[:n]
    get = operator.itemgetter(*idx)
    return (lambda xs: list(get(xs))) if len(idx) > 1 else (lambda xs: [xs[idx[0]]])
