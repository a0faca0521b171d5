"""The eager engine: the rule traced once and run as in-place torch ops over lists of tensors.

What the default engine runs from the first step, with nothing to compile: the rule's
:meth:`~descentlab.rules.base.Rule.update` is traced once with ``torch.fx`` (milliseconds),
and its graph is lowered to a short Python function in which each operation of the rule is
ONE ``torch._foreach_*`` call over a batch of tensors (torch loops over them in C++; the
batch size is :func:`~descentlab.engines.policy.eager_batch`, and a tensor larger than
:func:`~descentlab.engines.policy.eager_split` is stepped in pieces), written in place
wherever the value it overwrites is no longer needed:

* a running mean ``m + r * (g - m)`` becomes ``_foreach_lerp_(m, g, r)`` (torch.optim's own
  op), ``a - s * b`` becomes ``_foreach_sub_(a, b, alpha=s)``: the same values, one pass;
* torch.optim's own forms where they save a pass: a mean of squares as ``v *= 1 - r``
  then ``addcmul_``, ``p + s * (w * c / d)`` as ``addcdiv_(p, w, d, value=s * c)``, AdamW's
  decay as ``p *= 1 - lr * weight_decay`` before it;
* a slot's new value is computed in the slot's own storage once its old value is dead, and
  the parameter's in the parameter: nothing is allocated for them and nothing copied;
* the scalars (``-lr``, ``lr * weight_decay``...) are Python floats on the host;
* an operation with no foreach form (``where``, comparisons) runs per tensor, as the
  reference engine runs it.

The same plan is also written out for ONE tensor (:attr:`Program.run_one`): each foreach
call becomes the tensor method it stands for (``_foreach_lerp_(m, g, r)`` is ``m.lerp_(g,
r)``, as torch.optim's for-loop writes it). On a CPU torch's foreach ops loop over exactly
those methods, so the two forms agree bit for bit there; a call of one tensor (a large
parameter, or a piece of one) saves the list handling, about 0.5 us an operation.

So the rule is the one definition; this module only decides where each value is stored.
The result equals the reference engine's to round-off (those forms reassociate a product
of scalars, and ``lerp`` and ``alpha`` may use a fused multiply-add), which the test suite
holds on parameters and state for every rule; each lowering is also checked against the
reference at its first call in a process (:mod:`descentlab.engines.compiled`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.fx as fx

from ..rules.base import Rule

__all__ = ["Program", "program"]

_PROGRAMS: dict[tuple[Rule, tuple[str, ...]], Program] = {}

# operator -> foreach op name; "commutes": its operands may swap for an in-place form
_BINARY = {
    operator.add: ("add", True),
    operator.sub: ("sub", False),
    operator.mul: ("mul", True),
    operator.truediv: ("div", False),
}
_METHODS = {"sqrt": "sqrt", "abs": "abs", "sign": "sign", "neg": "neg", "maximum": "maximum"}


def program(rule: Rule, names: tuple[str, ...]) -> Program:
    """The eager program of ``rule`` with coefficients ``names`` (built once per process)."""
    key = (rule, names)
    found = _PROGRAMS.get(key)
    if found is None:
        found = _PROGRAMS[key] = Program(rule, names)
    return found


class Program:
    """``rule.update`` over lists: ``run(ps, gs, slot_lists, coefficients)`` steps in place;
    ``run_one(p, g, slots, coefficients)`` is the same plan for one tensor.

    ``ps``, ``gs`` and each list of ``slot_lists`` (in ``rule.slots`` order) hold the same
    number of real tensors of one dtype and device, pairwise shaped alike; ``coefficients``
    are the step's values in ``names`` order, shared by every tensor of the call. ``slots``
    holds one tensor per slot.
    """

    def __init__(self, rule: Rule, names: tuple[str, ...]) -> None:
        self.rule, self.names = rule, names
        self.graph = _trace(rule, names)
        self.source, namespace = _lower(self.graph, len(rule.slots), len(names))
        exec(compile(self.source, f"<descentlab eager {rule.name}>", "exec"), namespace)
        self.run: Callable[..., None] = namespace["run"]
        self.source_one, namespace = _lower(self.graph, len(rule.slots), len(names), one=True)
        exec(compile(self.source_one, f"<descentlab eager {rule.name} one>", "exec"), namespace)
        self.run_one: Callable[..., None] = namespace["run"]


def _trace(rule: Rule, names: tuple[str, ...]) -> fx.Graph:
    """``rule.update`` as a graph with placeholders ``p, g, s0.., c0..``."""
    slots = rule.slots
    args = ["p", "g", *(f"s{i}" for i in range(len(slots))), *(f"c{i}" for i in range(len(names)))]
    state = ", ".join(f"{s!r}: s{i}" for i, s in enumerate(slots))
    coeffs = ", ".join(f"{n!r}: c{i}" for i, n in enumerate(names))
    src = (
        f"def update({', '.join(args)}):\n    return rule.update(p, g, {{{state}}}, {{{coeffs}}})\n"
    )
    namespace: dict[str, Any] = {"rule": rule}
    exec(src, namespace)
    return fx.Tracer().trace(namespace["update"])


class _Plan:
    """How one tensor-valued node runs: a foreach op on operands (a node without a plan runs
    per tensor)."""

    def __init__(
        self,
        op: str,
        operands: list[Any],
        kwargs: dict[str, Any] | None = None,
        folded: Sequence[fx.Node] = (),
        commutes: bool = False,
        then: tuple[str, Any] | None = None,
    ) -> None:
        self.op, self.operands, self.kwargs = op, operands, kwargs or {}
        self.folded, self.commutes = list(folded), commutes
        self.then = then  # a second in-place op with one more operand, on the result
        self.before: tuple[str, Any] | None = None  # an in-place op on the target, first


class _Host:
    """A scalar computed on the host from scalar nodes: ``fmt`` with ``{0}``, ``{1}``..."""

    def __init__(self, fmt: str, *args: Any) -> None:
        self.fmt, self.args = fmt, args


def _args(node: Any) -> tuple[Any, ...]:
    """A node's positional arguments (fx types them as every possible argument)."""
    return tuple(node.args)


def _only_user(inner: Any, outer: fx.Node) -> bool:
    return isinstance(inner, fx.Node) and len(inner.users) == 1 and outer in inner.users


def _is_call(node: Any, target: Any) -> bool:
    return isinstance(node, fx.Node) and node.op == "call_function" and node.target is target


def _match(n: fx.Node, tensor: Mapping[fx.Node, bool]) -> _Plan | None:
    """The foreach form of ``n``, or None (then it runs per tensor, as the reference runs it)."""

    def is_t(a: Any) -> bool:
        return isinstance(a, fx.Node) and tensor[a]

    def is_s(a: Any) -> bool:
        return not is_t(a) and isinstance(a, fx.Node | int | float)

    if n.kwargs:
        return None
    if n.op == "call_function" and n.target in _BINARY:
        a, b = _args(n)
        name, commutes = _BINARY[n.target]
        if n.target is operator.add and is_t(a) and is_t(b):
            for x, prod in ((a, b), (b, a)):
                # x + r * (y - x): a running mean, torch's lerp
                if _is_call(prod, operator.mul) and _only_user(prod, n):
                    r, diff = _args(prod)
                    if not is_s(r):
                        r, diff = diff, r
                    if (
                        is_s(r)
                        and _is_call(diff, operator.sub)
                        and _only_user(diff, prod)
                        and _args(diff)[1] is x
                        and is_t(_args(diff)[0])
                    ):
                        y = _args(diff)[0]
                        if _is_call(y, operator.mul) and _only_user(y, diff):
                            u, w = _args(y)
                            if is_t(u) and is_t(w):
                                # x + r * (u * w - x): x * (1 - r) + r * u * w, torch's form
                                # of a mean of squares (no temporary for u * w)
                                squares = _Plan(
                                    "addcmul", [x, u, w], {"value": r}, folded=[prod, diff, y]
                                )
                                squares.before = ("mul", _Host("1.0 - {0}", r))
                                return squares
                        return _Plan("lerp", [x, y, r], folded=[prod, diff])
            for xd, prod in ((a, b), (b, a)):
                # x * d + r * (u * w): torch's mul_ then addcmul_ (its mean of squares)
                plan = _decayed_products(xd, prod, n, is_t, is_s)
                if plan is not None:
                    return plan
            for x, prod in ((a, b), (b, a)):
                # x + s * (y / z): torch's addcdiv
                plan = _addcdiv(x, prod, n, is_t, is_s)
                if plan is not None:
                    return plan
                # x + (s * (y / z) - c * x): decoupled decay, x * (1 - c) first (AdamW's form)
                if _is_call(prod, operator.sub) and _only_user(prod, n):
                    left, right = _args(prod)
                    if _is_call(right, operator.mul) and _only_user(right, prod):
                        c, w = _args(right)
                        if w is not x:
                            c, w = w, c
                        plan = _addcdiv(x, left, prod, is_t, is_s)
                        if w is x and is_s(c) and plan is not None:
                            plan.folded += [prod, right]
                            plan.before = ("mul", _Host("1.0 - {0}", c))
                            return plan
            for x, prod in ((a, b), (b, a)):
                # x + s * y: one pass with alpha
                if _is_call(prod, operator.mul) and _only_user(prod, n):
                    s, y = _args(prod)
                    if not is_s(s):
                        s, y = y, s
                    if is_s(s) and is_t(y):
                        return _Plan("add", [x, y], {"alpha": s}, folded=[prod])
        if n.target is operator.sub and is_t(a) and _is_call(b, operator.mul) and _only_user(b, n):
            s, y = _args(b)
            if not is_s(s):
                s, y = y, s
            if is_s(s) and is_t(y):
                return _Plan("sub", [a, y], {"alpha": s}, folded=[b])
        if is_t(a):
            return _Plan(name, [a, b], commutes=commutes)
        if commutes:  # scalar op tensor
            return _Plan(name, [b, a], commutes=commutes)
        if n.target is operator.truediv:  # s / T: torch computes T.reciprocal() * s
            return _Plan("reciprocal", [b], then=("mul", a))
        return None
    if n.op == "call_function" and n.target is operator.neg:
        return _Plan("neg", [_args(n)[0]])
    if n.op == "call_method" and n.target in _METHODS:
        if n.target == "maximum":
            a, b = _args(n)
            return _Plan("maximum", [a, b], commutes=True) if is_t(a) and is_t(b) else None
        if len(n.args) == 1:
            return _Plan(_METHODS[str(n.target)], [_args(n)[0]])
    return None


def _decayed_products(xd: Any, prod: Any, user: fx.Node, is_t: Any, is_s: Any) -> _Plan | None:
    """``x * d + r * (u * w)`` as ``x *= d`` then ``addcmul(x, u, w, value=r)``: torch.optim's
    running mean of squares (Adam, RMSprop, Adadelta), with no temporary for ``u * w``."""
    if not (
        _is_call(xd, operator.mul)
        and _only_user(xd, user)
        and _is_call(prod, operator.mul)
        and _only_user(prod, user)
    ):
        return None
    x, d = _args(xd)
    if not is_t(x):
        x, d = d, x
    r, y = _args(prod)
    if not is_s(r):
        r, y = y, r
    if not (is_t(x) and is_s(d) and is_s(r) and _is_call(y, operator.mul) and _only_user(y, prod)):
        return None
    u, w = _args(y)
    if not (is_t(u) and is_t(w)):
        return None
    plan = _Plan("addcmul", [x, u, w], {"value": r}, folded=[xd, prod, y])
    plan.before = ("mul", d)
    return plan


def _addcdiv(x: Any, prod: Any, user: fx.Node, is_t: Any, is_s: Any) -> _Plan | None:
    """``x + s * (y / z)`` as ``addcdiv(x, y, z, value=s)``; a scalar factor of ``y``
    (``y = w * c``: Adam's bias correction) is moved into ``value`` (``s * c``), as torch.optim
    folds it into its step size: one pass fewer, a reassociation of round-off size."""
    if not (_is_call(prod, operator.mul) and _only_user(prod, user)):
        return None
    s, quot = _args(prod)
    if not is_s(s):
        s, quot = quot, s
    if not (is_s(s) and _is_call(quot, operator.truediv) and _only_user(quot, prod)):
        return None
    y, z = _args(quot)
    if not (is_t(y) and is_t(z)):
        return None
    if _is_call(y, operator.mul) and _only_user(y, quot):
        w, c = _args(y)
        if not is_s(c):
            w, c = c, w
        if is_s(c) and is_t(w):
            return _Plan(
                "addcdiv", [x, w, z], {"value": _Host("{0} * {1}", s, c)}, folded=[prod, quot, y]
            )
    return _Plan("addcdiv", [x, y, z], {"value": s}, folded=[prod, quot])


def _flat_args(n: fx.Node) -> list[Any]:
    out: list[Any] = []
    fx.node.map_aggregate((_args(n), n.kwargs), out.append)
    return out


def _in_place(op: str, target: str, args: list[str], one: bool) -> str:
    """``target op= args`` over lists (a foreach call) or, with ``one``, on one tensor."""
    if not one:
        return f"torch._foreach_{op}_({', '.join([target, *args])})"
    if op == "maximum":  # the one op without an in-place method
        return f"torch.maximum({target}, {args[0]}, out={target})"
    return f"{target}.{op}_({', '.join(args)})"


def _out_of_place(op: str, args: list[str], one: bool) -> str:
    return f"torch.{op}({', '.join(args)})" if one else f"torch._foreach_{op}({', '.join(args)})"


def _lower(
    graph: fx.Graph, n_slots: int, n_coeffs: int, one: bool = False
) -> tuple[str, dict[str, Any]]:
    """The Python source of ``run(P, G, S, C)`` for ``graph``, and its namespace: over lists
    of tensors, or with ``one`` over one tensor (``S`` then holds one tensor per slot)."""
    nodes = list(graph.nodes)
    new_p, new_slots = _args(nodes[-1])[0]
    placeholders = [n for n in nodes if n.op == "placeholder"]
    p_node, g_node = placeholders[0], placeholders[1]
    slot_nodes = placeholders[2 : 2 + n_slots]
    coeff_nodes = placeholders[2 + n_slots :]
    if len(new_slots) != n_slots:
        raise ValueError("the rule must return every slot")
    order = {n: i for i, n in enumerate(nodes)}
    end = len(nodes)

    tensor: dict[fx.Node, bool] = dict.fromkeys([p_node, g_node, *slot_nodes], True)
    tensor.update(dict.fromkeys(coeff_nodes, False))
    calls = [n for n in nodes if n.op in ("call_function", "call_method")]
    for n in calls:
        tensor[n] = any(isinstance(a, fx.Node) and tensor[a] for a in _flat_args(n))

    # Plans, outermost first, so that a pattern folds the nodes it absorbs.
    plans: dict[fx.Node, _Plan | None] = {}
    folded: set[fx.Node] = set()
    for n in reversed(calls):
        if n in folded or not tensor[n]:
            continue
        plan = plans[n] = _match(n, tensor)
        if plan is not None:
            folded.update(plan.folded)

    def reads(n: fx.Node) -> list[Any]:
        plan = plans.get(n)
        if plan is None:
            return _flat_args(n)
        return [*plan.operands, *plan.kwargs.values(), *(plan.then[1:] if plan.then else ())]

    # Where each value is read for the last time; outputs live to the end.
    storage = {p_node: "P", g_node: "G", **{n: f"S[{i}]" for i, n in enumerate(slot_nodes)}}
    targets = [("P", new_p)] + [(f"S[{i}]", node) for i, node in enumerate(new_slots.values())]
    if any(
        isinstance(node, fx.Node) and node.op == "placeholder" and storage.get(node) != where
        for where, node in targets
    ):
        raise ValueError("a rule's output is another input, unchanged")
    last_use: dict[fx.Node, int] = {}
    for n in nodes:
        if n in folded or n.op == "output":
            continue
        for a in reads(n) if n in plans else _flat_args(n):
            if isinstance(a, fx.Node):
                last_use[a] = order[n]
    wanted: dict[fx.Node, list[str]] = {}
    for where, node in targets:
        last_use[node] = end
        wanted.setdefault(node, []).append(where)
    old_value = {where: node for node, where in storage.items()}

    namespace: dict[str, Any] = {"torch": torch}
    var: dict[fx.Node, str] = {**storage, **{n: f"c{i}" for i, n in enumerate(coeff_nodes)}}
    lines = ["def run(P, G, S, C):"]
    if n_coeffs:
        lines.append(f"    {', '.join(var[n] for n in coeff_nodes)}, = C")
    owned: set[str] = set()
    scratch: set[str] = set()

    def src(a: Any) -> str:
        if isinstance(a, _Host):
            return "(" + a.fmt.format(*map(src, a.args)) + ")"
        if isinstance(a, fx.Node):
            return var[a]
        if isinstance(a, bool | int | float) or a is None:
            return repr(a)
        name = f"_k{len(namespace)}"
        namespace[name] = a
        return name

    def dies_here(a: Any, n: fx.Node) -> bool:
        return isinstance(a, fx.Node) and last_use.get(a, -1) <= order[n]

    def free(n: fx.Node) -> None:
        """Peak memory: a temporary is freed as soon as it has been read for the last time."""
        dead = [
            var[a]
            for a in dict.fromkeys(reads(n))
            if isinstance(a, fx.Node)
            and var.get(a) in owned
            and var[a] != var[n]
            and dies_here(a, n)
        ]
        if dead:
            lines.append(f"    del {', '.join(dead)}")
            owned.difference_update(dead)

    for n in calls:
        if n in folded:
            continue
        if not tensor[n]:  # host arithmetic on Python floats
            var[n] = n.name
            lines.append(f"    {n.name} = {_call(n, src, namespace)}")
            continue
        plan = plans[n]
        if plan is None:  # per tensor, exactly as the reference runs it
            var[n] = n.name
            owned.add(n.name)
            lines.append(f"    {n.name} = {_per_tensor(n, tensor, src, namespace, one)}")
            free(n)
            continue
        operands = list(plan.operands)
        target = None
        candidates = [0, 1] if plan.commutes and tensor.get(operands[1], False) else [0]
        # 1) into the output's own storage, where its old value dies at this node
        for where in wanted.get(n, []):
            old = old_value.get(where)
            for i in candidates:
                if target is None and operands[i] is old and dies_here(old, n) and where != "G":
                    target, operands = where, [operands[i], *(operands[:i] + operands[i + 1 :])]
        # 2) in place on a temporary of ours, or on a slot whose old value, that dies here
        if target is None:
            for i in candidates:
                a = operands[i]
                reusable = (
                    var.get(a) in owned
                    or var.get(a) in scratch
                    or (isinstance(a, fx.Node) and a in slot_nodes and var[a] == storage[a])
                )
                if target is None and reusable and dies_here(a, n):
                    target, operands = var[a], [a, *(operands[:i] + operands[i + 1 :])]
        kwargs = [f"{k}={src(v)}" for k, v in plan.kwargs.items()]
        if target is not None:
            if plan.before:
                lines.append(f"    {_in_place(plan.before[0], target, [src(plan.before[1])], one)}")
            rest = [src(a) for a in operands[1:]]
            lines.append(f"    {_in_place(plan.op, target, rest + kwargs, one)}")
            if plan.then:
                lines.append(f"    {_in_place(plan.then[0], target, [src(plan.then[1])], one)}")
            var[n] = target
            if target.startswith("S["):
                scratch.add(target)  # a slot's storage, free once its old value died
        elif plan.before:  # out of place: the first op makes the new list
            var[n] = n.name
            owned.add(n.name)
            first = _out_of_place(plan.before[0], [src(operands[0]), src(plan.before[1])], one)
            lines.append(f"    {n.name} = {first}")
            rest = [src(a) for a in operands[1:]]
            lines.append(f"    {_in_place(plan.op, n.name, rest + kwargs, one)}")
        else:
            var[n] = n.name
            owned.add(n.name)
            args = [src(a) for a in operands]
            lines.append(f"    {n.name} = {_out_of_place(plan.op, args + kwargs, one)}")
            if plan.then:
                lines.append(f"    {_in_place(plan.then[0], n.name, [src(plan.then[1])], one)}")
        free(n)
    for where, node in targets:  # outputs not computed in place: copied home
        if var[node] == where:
            continue
        if var[node] in storage.values():  # a slot's storage reused for another's value
            raise ValueError("outputs crossed between storages")
        lines.append(f"    {_in_place('copy', where, [var[node]], one)}")
    return "\n".join(lines) + "\n", namespace


def _fn_name(n: fx.Node, namespace: dict[str, Any]) -> str:
    name = f"_f{len(namespace)}"
    namespace[name] = n.target
    return name


def _call(n: fx.Node, src: Callable[[Any], str], namespace: dict[str, Any]) -> str:
    """``n`` as a Python expression of its (scalar) arguments."""
    args = [src(a) for a in _args(n)] + [f"{k}={src(v)}" for k, v in n.kwargs.items()]
    if n.op == "call_method":
        return f"{args[0]}.{n.target}({', '.join(args[1:])})"
    return f"{_fn_name(n, namespace)}({', '.join(args)})"


def _per_tensor(
    n: fx.Node,
    tensor: Mapping[fx.Node, bool],
    src: Callable[[Any], str],
    namespace: dict[str, Any],
    one: bool = False,
) -> str:
    """``n`` as a list comprehension over the tensors, the reference's own operation (with
    ``one``, that operation on the one tensor)."""
    lists = [a for a in dict.fromkeys(_flat_args(n)) if isinstance(a, fx.Node) and tensor[a]]
    item = {a: src(a) if one else f"_x{i}" for i, a in enumerate(lists)}

    def arg(a: Any) -> str:
        return item[a] if a in item else src(a)

    args = [arg(a) for a in _args(n)] + [f"{k}={arg(v)}" for k, v in n.kwargs.items()]
    if n.op == "call_method":
        expr = f"{args[0]}.{n.target}({', '.join(args[1:])})"
    else:
        expr = f"{_fn_name(n, namespace)}({', '.join(args)})"
    if one:
        return expr
    if len(lists) == 1:
        return f"[{expr} for {item[lists[0]]} in {src(lists[0])}]"
    zipped = ", ".join(src(a) for a in lists)
    return f"[{expr} for {', '.join(item[a] for a in lists)} in zip({zipped})]"
