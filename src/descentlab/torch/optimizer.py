"""The machinery of every drop-in: a ``torch.optim.Optimizer`` that runs a descentlab rule.

:class:`RuleOptimizer` holds what torch.optim's classes share (``param_groups``, ``state``,
``state_dict``, hooks, ``step(closure)``) and executes the registered rule of its subclass
on every parameter, through the engine the policy (:mod:`descentlab.engines.policy`) picks.
The classes users import (``SGD``, ``Adam``...) only declare their registry entry and
torch's signature.
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch

from ..engines import FlatBucket, GroupPlan, apply_reference, policy
from ..engines.compiled import overlapping
from ..engines.policy import TORCH_ENGINES
from ..engines.reference import begin_step, real, steps_taken
from ..engines.traced import step_traced, traceable
from ..optimizers import OptimizerInfo
from ..rules.base import Rule, advance

__all__ = ["COUNTED", "RuleOptimizer", "scalar_dtype"]

COUNTED = (*TORCH_ENGINES[1:], "traced")
"""The keys of ``engine_counts``: every ``engine=`` choice but ``"auto"``, and the traced
path that runs inside the user's ``torch.compile``."""


def scalar_dtype(group: dict[str, Any]) -> torch.dtype:
    """The dtype of ``step``: torch.optim's rule (float32 with ``fused=True``, else float64
    only when that is the default dtype)."""
    if group.get("fused"):
        return torch.float32
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


_IMMUTABLE = (float, int, bool, str, type(None))


def _immutable(value: Any) -> bool:
    """A hyperparameter value nobody can change in place (a number, a flag, a string, a tuple
    of them); a tensor or a list can be."""
    if type(value) is tuple:
        return all(map(_immutable, value))
    return type(value) in _IMMUTABLE


def _check_params(params: Any, title: str) -> Any:
    if isinstance(params, torch.Tensor):
        raise TypeError(
            f"{title}: params must be an iterable of Tensors, (name, Tensor) pairs or dicts, "
            f"got a single tensor ({type(params).__name__}); wrap it in a list"
        )
    if not isinstance(params, Iterable):
        raise TypeError(
            f"{title}: params must be an iterable of Tensors, (name, Tensor) pairs or dicts, "
            f"got {type(params).__name__}"
        )
    params = list(params)
    if not params:
        raise ValueError(f"{title}: got an empty parameter list")
    return params


class RuleOptimizer(torch.optim.Optimizer):
    """Base of the drop-ins: runs the registered rule of ``info`` on every parameter.

    Subclasses only declare ``info`` and an ``__init__`` with torch's signature.

    **Conventions** shared by every drop-in:

    * a parameter whose ``.grad`` is ``None`` is skipped and its ``step`` does not advance;
    * sparse gradients are accepted by SGD, as by torch's (a momentum buffer is kept dense,
      where torch's SGD keeps a sparse one), and refused with an error by the others (use
      ``torch.optim.SparseAdam``, re-exported here);
    * complex parameters are updated as pairs of real numbers (``view_as_real``), as torch does;
    * float16/bfloat16 parameters are updated with float32 arithmetic and rounded once per
      step, so ``eps=1e-8`` (which is 0 in float16) still guards the division; their state
      is stored in the parameter's dtype, as torch stores it;
    * non-finite gradients propagate into the parameters, as in torch.optim; with
      ``skip_nonfinite=True`` a step whose gradients hold a NaN or an infinity is skipped
      whole (parameters and state untouched) and counted in ``skipped_steps``.

    **Engines** (``engine=``), all executing the same rule:

    * ``"reference"``: one tensor at a time, the ground truth;
    * ``"compiled"``: chunks of parameters stepped by one ``torch.compile``-d call each,
      reading every tensor where it is (no storage moves, no gradient copy); per-parameter
      step counts; compiles at the first step and waits; see
      :mod:`descentlab.engines.compiled`. Falls back to the eager engine, with one warning,
      where compiling is unavailable;
    * ``"eager"``: the rule traced once and run as in-place ``torch._foreach_*`` operations
      over batches of tensors; nothing to compile (see :mod:`descentlab.engines.eager`);
    * ``"auto"`` (default): ``"eager"`` for groups of at least 16 tensors or 2**16
      elements, else ``"reference"``; switches to ``"compiled"`` only once the run has
      spent enough time stepping to pay for a compile, made in a background process (see
      :mod:`descentlab.engines.background`);
    * inside the user's ``torch.compile`` (``torch.compile(opt.step)``, a compiled training
      step) every element-wise group is traced into the user's graph whatever ``engine``
      says: one graph, no break, no recompile (see :mod:`descentlab.engines.traced`;
      counted as ``engine_counts["traced"]``);
    * ``"flat"`` / ``"flat-eager"`` (opt-in): each group's parameters are **re-homed** as
      views of one contiguous buffer and stepped by ONE compiled (or eager) pass. This
      changes what the ecosystem sees (one shared storage: see the README before saving
      checkpoints or using ZeRO/FSDP); it refuses, with one warning and the default engine
      instead, tensor subclasses (DTensor), duplicate parameters and parameters that
      share storage.

    Parameters the compiled engine cannot take (complex, non-contiguous, fewer than 2
    elements, DTensor, overlapping another parameter), gradients or state it cannot read in
    place, and rules that are not element-wise (Adafactor, Muon) are stepped by the
    reference engine. ``engine_counts`` counts, per engine, the
    parameter updates it executed.

    **In-step measurement** (what :func:`descentlab.telemetry` reads on a sampled step):
    :meth:`measure_next_step` asks the next step to compute, per parameter, the squared
    norms of its update, of the weights before it and of the gradient, where the engine
    computes the step (a compiled kernel sums what the update reads anyway: no copy of the
    parameters, no extra pass); :meth:`take_step_measurements` hands them over after it.
    """

    info: ClassVar[OptimizerInfo]

    def __init__(
        self,
        params: Any,
        defaults: dict[str, Any],
        *,
        skip_nonfinite: bool = False,
        engine: str = "auto",
    ) -> None:
        # Hyperparameters first, then params: the order (and so the error) of torch.optim.
        self.info.validate(defaults)
        params = _check_params(params, self.info.title)
        if not isinstance(skip_nonfinite, bool):
            raise TypeError(f"{self.info.title}: skip_nonfinite must be True or False")
        if engine not in TORCH_ENGINES:
            choices = ", ".join(TORCH_ENGINES)
            raise ValueError(
                f"{self.info.title}: unknown engine {engine!r}; choose one of: {choices}"
            )
        self.skip_nonfinite = skip_nonfinite
        self.skipped_steps = 0
        self.engine = engine
        # engine_counts is a property: the traced engine counts in a tensor (see below)
        self._counts: dict[str, int] = dict.fromkeys(COUNTED, 0)
        self._traced_updates = torch.zeros((), dtype=torch.int64)
        self._trace_rules: dict[int, Rule] = {}
        self._buckets: dict[int, FlatBucket] = {}
        self._plans: dict[int, GroupPlan] = {}
        self._group_rules: dict[int, tuple[list[Any], Rule, dict[str, float]]] = {}
        self._refused: set[str] = set()
        self._step_home: dict[int, dict[str, torch.Tensor]] = {}  # see _prepare_state
        # measure_next_step() sets _measure for one step: the engines then leave update_stats
        # per parameter in _update_stats (keyed by id(param)); take_step_measurements() reads.
        self._measure = False
        self._update_stats: dict[int, torch.Tensor] = {}
        super().__init__(params, defaults)

    # Settings that are not torch's: kept by pickling/copying (__getstate__) AND by
    # load_state_dict, which ends in __setstate__ with torch's keys only.
    _SETTINGS: ClassVar[dict[str, Any]] = {
        "skip_nonfinite": False,
        "skipped_steps": 0,
        "engine": "auto",
        "engine_counts": None,
    }

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        for key in self._SETTINGS:
            state[key] = getattr(self, key)
        return state

    @property
    def engine_counts(self) -> dict[str, int]:
        """Per engine, the parameter updates it executed (``"traced"``: inside the user's
        ``torch.compile``, counted in a tensor by the compiled graph and read here)."""
        self._counts["traced"] = int(self._traced_updates)
        return self._counts

    @engine_counts.setter
    def engine_counts(self, value: dict[str, int] | None) -> None:
        self._counts = {**dict.fromkeys(COUNTED, 0), **(value or {})}
        self._traced_updates = torch.tensor(self._counts["traced"], dtype=torch.int64)

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, default in self._SETTINGS.items():
            setattr(self, key, state.pop(key, getattr(self, key, default)))
        self._trace_rules = {}
        # load_state_dict lands here too: buckets and plans then check the new state tensors
        # (and rebuild) at the next step; an unpickled copy starts without them.
        self._buckets = getattr(self, "_buckets", {})
        self._plans = getattr(self, "_plans", {})
        self._group_rules = {}
        self._refused = getattr(self, "_refused", set())
        # Private step counters are keyed by id(param): a copy's parameters are new objects
        # (its counters restart from its buffers), a loaded state replaced the buffers.
        self._step_home = {}
        self._measure, self._update_stats = False, {}
        super().__setstate__(state)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group; its hyperparameters are validated before anything changes."""
        if not isinstance(param_group, dict):
            raise TypeError(f"{self.info.title}: a param group must be a dict")
        merged = {**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}}
        self.info.validate(merged)
        super().add_param_group(param_group)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state saved by this class or by its ``torch.optim`` twin.

        A checkpoint of another optimizer is refused (``ValueError``). Hyperparameters that
        the saved groups lack (added to torch.optim later, or descentlab's own) take their
        defaults; a ``step`` in an SGD checkpoint (older descentlab) is dropped, as
        torch.optim.SGD keeps none.
        """
        self.info.check_state_dict(state_dict)
        super().load_state_dict(state_dict)
        if not self.info.stores_step:
            # Parameters only: a load hook may keep its own entries in ``state`` (torch's do).
            for p in [k for k in self.state if isinstance(k, torch.Tensor)]:
                self.state[p].pop("step", None)
                if not self.state[p]:
                    del self.state[p]
        for group in self.param_groups:
            for key, value in self.defaults.items():
                if key in self.info.defaults:  # torch adds defaults["differentiable"] on load
                    group.setdefault(key, value)
            self.info.validate(group)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; ``closure`` re-evaluates and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # cleared, not replaced: dynamo does not carry an attribute assignment on an
        # optimizer out of a traced step (a mutation of the dict it holds, it does)
        self._update_stats.clear()
        # Inside the user's torch.compile (is_dynamo_compiling: True only where dynamo traces
        # THIS code; is_compiling() is process-wide, also True while another thread compiles)
        # every group whose rule is element-wise is stepped in the graph (the traced engine);
        # the rest, and a step that skip_nonfinite may skip (a decision on data), leave the
        # graph once and run as outside it.
        if torch.compiler.is_dynamo_compiling():
            if self.skip_nonfinite:
                self._step_outside_trace(range(len(self.param_groups)))
                return loss
            left = [i for i, g in enumerate(self.param_groups) if not self._traced_step(i, g)]
            if left:
                self._step_outside_trace(left)
            return loss
        self._step_groups(range(len(self.param_groups)))
        return loss

    def _step_groups(self, indices: Iterable[int]) -> None:
        """Step the groups ``indices`` with the engines (outside any trace)."""
        if self.skip_nonfinite and not self._grads_finite():
            self.skipped_steps += 1
            return
        for index in indices:
            group = self.param_groups[index]
            rule, hp = self._group_rule(index, group)
            bucket = self._buckets.get(index)
            if self.engine in ("flat", "flat-eager") and (
                (bucket is not None and bucket.intact(group["params"], rule))
                or self._flat_allowed(group)
            ):
                rest = self._flat_step(index, group, rule, hp)
            else:
                rest = self._compiled_step(index, group, rule, hp)
            self._reference_step(rest, group, rule, hp)

    def _group_rule(self, index: int, group: dict[str, Any]) -> tuple[Rule, dict[str, float]]:
        """The rule and the numeric hyperparameters of group ``index``, kept while the group
        holds the very same values and every one of them is immutable (numbers, flags,
        strings, tuples of them): a tensor ``lr`` may change in place, so it is read again
        at every step, as is any value a scheduler replaced. (Building both cost 30 us a
        step against the caches' misses, 1% of a 76-tensor SGD step.) The engines read the
        returned dict and never write it: it is the one kept for the next step."""
        values = list(map(group.get, self.info.defaults))
        kept = self._group_rules.get(index)
        if kept is not None and all(map(operator.is_, values, kept[0])):
            return kept[1], kept[2]
        rule, hp = self.info.rule(group), self.info.scalars(group)
        if all(map(_immutable, values)):
            self._group_rules[index] = (values, rule, hp)
        else:
            self._group_rules.pop(index, None)
        return rule, hp

    # torch._disable_dynamo is torch.compiler.disable, importing dynamo only when called (as
    # torch.optim's own zero_grad uses it): the decorator itself would import dynamo with
    # this module, a second of start-up for every user, compiling or not.
    @torch._disable_dynamo
    def _step_outside_trace(self, indices: Iterable[int]) -> None:
        """:meth:`_step_groups` called from a traced step: one graph break, then the
        engines run as they do outside the compile."""
        self._step_groups(list(indices))

    def measure_next_step(self) -> bool:
        """Have the next :meth:`step` measure what it does, inside its engines.

        Returns whether it will: ``False`` with the flat engines, which step whole buffers
        (measure around the step instead, from a copy of the parameters). Read the figures
        with :meth:`take_step_measurements` once the step is done.
        """
        if self.engine in ("flat", "flat-eager"):
            return False
        self._measure = True
        return True

    def take_step_measurements(self) -> dict[int, torch.Tensor] | None:
        """The figures of the step :meth:`measure_next_step` asked for; measuring then stops.

        ``{id(param): tensor([||w_t - w_{t-1}||**2, ||w_{t-1}||**2, ||g||**2])}`` for every
        parameter the step updated, summed in the rule's compute precision on the
        parameter's device (a step that ``skip_nonfinite`` skipped updated none). ``None``
        when no measured step is pending.
        """
        if not self._measure:
            return None
        self._measure = False
        return dict(self._update_stats)

    def unflatten(self) -> None:
        """Give every parameter and state tensor its own storage back (``engine="flat"``).

        The flat engines re-home a group into one buffer; call this before saving with tools
        that refuse or drop shared storage (``safetensors.torch.save_model``, accelerate's
        ``save_model``) or before handing the model to ZeRO/FSDP. The next flat step re-homes
        them again (one copy). A no-op with the other engines, which never move storage.
        """
        for bucket in self._buckets.values():
            for p in bucket.params:
                p.data = p.data.clone()
                if p.grad is not None:
                    p.grad = p.grad.clone()
                state = self.state[p]
                for key, value in list(state.items()):
                    if isinstance(value, torch.Tensor):
                        state[key] = value.clone()
        self._buckets = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        """As torch.optim; with a flat engine ``set_to_none=False`` zeroes one buffer."""
        if set_to_none or not self._buckets:
            super().zero_grad(set_to_none)
            return
        flat: set[int] = set()
        for bucket in self._buckets.values():
            bucket.point_grads()
            flat.update(map(id, bucket.params))
        for group in self.param_groups:
            for p in group["params"]:
                if id(p) not in flat and p.grad is not None:
                    p.grad = p.grad.detach() if p.grad.grad_fn is not None else p.grad
                    p.grad.zero_()

    def _reference_step(
        self, params: list[torch.Tensor], group: dict[str, Any], rule: Rule, hp: dict[str, float]
    ) -> None:
        cache: dict[int, dict[str, float]] = {}
        for p in params:
            if p.grad is None:
                continue
            if p.grad.is_sparse and not self.info.sparse_grads:
                raise RuntimeError(
                    f"{self.info.title} does not support sparse gradients; "
                    "use torch.optim.SparseAdam or a dense gradient"
                )
            if p.is_complex() and not rule.elementwise:
                raise RuntimeError(f"{self.info.title} does not support complex parameters")
            state, home = self._prepare_state(p, rule, group)
            t = int(advance(home["step"]).item())
            if rule.scalar_names:  # per-parameter scalars: per-parameter coefficients
                c = begin_step(rule, hp, t, state)
            else:
                if t not in cache:
                    cache[t] = rule.coefficients(hp, t)
                c = cache[t]
            stats = apply_reference(rule, p, p.grad, state, c, self._measure)
            if stats is not None:
                self._update_stats[id(p)] = stats
            self._counts["reference"] += 1

    def _traced_step(self, index: int, group: dict[str, Any]) -> bool:
        """Step the group inside the user's ``torch.compile`` (see
        :mod:`descentlab.engines.traced`); False for a rule that is not element-wise."""
        params: list[torch.Tensor] = []
        grads: list[torch.Tensor] = []
        steps: list[torch.Tensor] = []
        slots: list[torch.Tensor] = []
        scalars: list[torch.Tensor] = []
        if not self._init_group(group, index, params, grads, steps, slots, scalars):
            return False
        rule = self._trace_rules[index]
        hp = self.info.traced_scalars(group)
        stats = step_traced(rule, hp, params, grads, steps, slots, scalars, self._measure)
        if self._measure:
            for p, row in zip(params, stats, strict=True):
                if row is not None:
                    self._update_stats[id(p)] = row
        self._traced_updates.add_(len(params))
        return True

    def _init_group(
        self,
        group: dict[str, Any],
        index: int,
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        steps: list[torch.Tensor],
        slots: list[torch.Tensor],
        scalars: list[torch.Tensor],
    ) -> bool:
        """Make the group's state ready and list what the traced step reads.

        torch.optim's optimizers share this hook with dynamo: inside a ``torch.compile``
        trace it runs in Python, not traced, and dynamo guards on the state it leaves, so
        creating state, reading ``id(p)`` or the rule's cache costs no graph break and no
        recompile. Fills the lists in place (``slots`` and ``scalars`` parameter after
        parameter, in the rule's order). Returns False for a rule that is not element-wise
        (listing nothing) and for step counts of mixed dtypes or devices (a checkpoint
        loaded into part of the group): the group then steps outside the trace.
        """
        rule = self.info.rule(group)
        if not rule.elementwise:
            return False
        self._trace_rules[index] = rule
        for p in group["params"]:
            g = p.grad
            if g is None:
                continue
            if g.is_sparse:
                raise RuntimeError(
                    f"{self.info.title}: sparse gradients cannot be stepped inside "
                    "torch.compile; step outside it"
                )
            state, home = self._prepare_state(p, rule, group)
            params.append(p)
            grads.append(g)
            steps.append(home["step"])
            slots.extend(state[name] for name in rule.slots)
            scalars.extend(state[name] for name in rule.scalar_names)
        return traceable(steps, scalars)

    def _compiled_step(
        self, index: int, group: dict[str, Any], rule: Rule, hp: dict[str, float]
    ) -> list[torch.Tensor]:
        """Step what the compiled engine can take; returns what the reference must step."""
        params = group["params"]
        mode = policy.torch_group_mode(self.engine)
        if mode == "reference" or not rule.elementwise:
            return params  # a rule that is not element-wise runs on the reference engine
        plan = self._plans.get(index)
        if plan is None or not plan.same_group(params, rule) or plan.mode != mode:
            plan = self._plans[index] = GroupPlan(
                list(params),
                rule,
                scalar_dtype(group),
                mode,
                first_step_only=not self.info.stores_step,  # private counters (SGD)
            )
        if not policy.torch_group_compiles(self.engine, len(plan.eligible), plan.numel):
            return params
        stepped, rest = plan.step(
            self.state, hp, lambda p: self._prepare_state(p, rule, group), self._measure
        )
        self._counts["eager"] += plan.eager_count
        self._counts["compiled"] += stepped - plan.eager_count
        self._update_stats.update((id(p), row) for p, row in plan.measured)
        return rest

    def _flat_allowed(self, group: dict[str, Any]) -> bool:
        """The flat engines re-home storage: refuse (one warning) what that would break."""
        params = group["params"]
        owned = {b.p_flat.data_ptr() for b in self._buckets.values()}
        reason = None
        rule = self.info.rule(group)
        if not rule.runs_flat:
            reason = (
                f"the rule of {self.info.title} is not element-wise or keeps per-parameter scalars"
            )
        elif any(type(p.data) is not torch.Tensor for p in params):
            reason = "a parameter is a tensor subclass (such as FSDP's DTensor)"
        elif len({id(p) for p in params}) != len(params):
            reason = "a parameter is listed twice"
        else:
            all_params = [p for g in self.param_groups for p in g["params"]]
            if overlapping(all_params):
                reason = "two parameters share memory (tied through .data)"
            elif any(
                p.untyped_storage().nbytes() != p.numel() * p.element_size()
                and p.untyped_storage().data_ptr() not in owned
                for p in params
            ):
                reason = "a parameter is a view into a larger storage (ZeRO buckets, ties)"
        if reason is None:
            return True
        if reason not in self._refused:
            self._refused.add(reason)
            warnings.warn(
                f"descentlab: engine={self.engine!r} re-homes parameters into one buffer and "
                f"cannot here: {reason}; using the default engine for this group instead",
                RuntimeWarning,
                stacklevel=3,
            )
        return False

    def _flat_engine(self, params: list[torch.Tensor]) -> str | None:
        if not params:
            return None
        first = params[0]
        if not all(
            p.dtype == first.dtype
            and p.device == first.device
            and p.layout == torch.strided
            and p.is_contiguous()
            and p.is_floating_point()
            for p in params
        ):
            return None
        return self.engine

    def _flat_step(
        self, index: int, group: dict[str, Any], rule: Rule, hp: dict[str, float]
    ) -> list[torch.Tensor]:
        """One fused step of the group's flat bucket; returns what the reference must step.

        Frozen parameters stay out of the bucket, but torch.optim steps any parameter that
        has a gradient, so they are handed to the reference engine like everything else
        the bucket cannot take this step.
        """
        everything = group["params"]
        bucket = self._buckets.get(index)
        if (
            bucket is None
            or not bucket.intact(everything, rule)
            or not bucket.state_intact(self.state, self._home)
        ):
            # Frozen parameters stay out of the buffer; the partition is kept until the
            # group changes. A buffered parameter frozen later simply loses its gradient
            # (the step then falls back), one thawed later is stepped by the reference.
            params = [p for p in everything if p.requires_grad]
            engine = self._flat_engine(params)
            if engine is None:
                self._buckets.pop(index, None)
                return self._compiled_step(index, group, rule, hp)
            bucket = FlatBucket(
                params, lambda p: self._prepare_state(p, rule, group), rule, engine == "flat"
            )
            bucket.members = list(everything)
            self._buckets[index] = bucket
        if not bucket.gather() or not bucket.uniform_steps():
            return everything
        bucket.step(hp)
        self._counts[self.engine] += len(bucket.params)
        return bucket.rest

    def _grads_finite(self) -> bool:
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        grads = [g.coalesce().values() if g.is_sparse else g for g in grads]
        return all(bool(torch.isfinite(g).all()) for g in grads)

    def _home(self, p: torch.Tensor) -> dict[str, Any] | None:
        """Where the step count of ``p`` lives, if it has one yet (see :meth:`_prepare_state`)."""
        if self.info.stores_step:
            return self.state.get(p)
        return self._step_home.get(id(p))

    def _start_values(self, rule: Rule, group: dict[str, Any]) -> dict[str, float]:
        """The starts a transform declares (:meth:`Transform.initial`), from the group's
        hyperparameters (Rprop's first step size, ASGD's first ``eta``: the group's ``lr``)
        or, for Adagrad, from the constructor's (``self.defaults``): torch.optim.Adagrad
        reads ``initial_accumulator_value`` there, a param group's own value is kept in the
        group but never read."""
        if not (rule.starts_nonzero):
            return {}
        source = self.defaults if self.info.starts_from_constructor else group
        return rule.initial(self.info.scalars(source))

    def _start_slots(
        self, rule: Rule, created: dict[str, torch.Tensor], group: dict[str, Any]
    ) -> None:
        """Give fresh slots their declared start; a complex parameter's slot starts at
        ``complex(v, v)``, as torch's."""
        for name, value in self._start_values(rule, group).items():
            if name in created and value != 0:
                real(created[name]).fill_(value)

    def _create_state_now(self) -> None:
        """Create every parameter's state at once, as torch.optim.Adagrad does in
        ``__init__`` (state_dict then holds all parameters, stepped or not)."""
        for group in self.param_groups:
            rule = self.info.rule(group)
            for p in group["params"]:
                self._prepare_state(p, rule, group)

    def _prepare_state(
        self, p: torch.Tensor, rule: Rule, group: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The state of ``p`` ready for a step, and the dict holding its ``step`` counter.

        The state holds torch.optim's keys, no more: ``step`` and the rule's slots, except for
        SGD (and Momentum), whose state is torch.optim.SGD's: a momentum buffer when the
        rule has one, nothing at all otherwise. Their rule only asks whether the buffer is
        new (step 1: torch starts it at the gradient, also when momentum is switched on
        mid-run), so their counter is private (``_step_home``): 0 when the buffer was just
        created, 1 for a buffer that already existed (loaded from a checkpoint).
        """
        dtype = scalar_dtype(group)
        if self.info.stores_step:
            state = self.state[p]
            if "step" not in state:
                state["step"] = torch.tensor(steps_taken(state, rule), dtype=dtype)
            elif not isinstance(state["step"], torch.Tensor):  # older torch checkpoints
                state["step"] = torch.tensor(float(state["step"]), dtype=dtype)
            home = state
        else:
            state = self.state[p] if rule.slots else {}
            home = self._step_home.setdefault(id(p), {})
        shapes = rule.slot_shapes(tuple(p.shape))
        created = [name for name in shapes if state.get(name) is None]
        for name in created:
            if shapes[name] == tuple(p.shape):
                state[name] = torch.zeros_like(p, memory_format=torch.preserve_format)
            else:  # a factored slot (Adafactor's row_var, col_var)
                state[name] = p.new_zeros(shapes[name])
        fresh = bool(created)
        if fresh and rule.starts_nonzero:
            self._start_slots(rule, {name: state[name] for name in created}, group)
        missing = [name for name in rule.scalar_names if state.get(name) is None]
        if missing:  # 0-dim tensors of the step's dtype, beside it (torch's NAdam, ASGD)
            start = self._start_values(rule, group)
            for name in missing:
                state[name] = torch.tensor(start.get(name, 0.0), dtype=dtype)
        if not self.info.stores_step:
            if "step" not in home:
                home["step"] = torch.tensor(0.0 if fresh else 1.0, dtype=dtype)
            elif fresh:
                home["step"].zero_()
        return state, home
