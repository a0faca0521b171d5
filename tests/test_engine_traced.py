"""The step inside the user's ``torch.compile`` (the traced engine).

torch's documentation compiles ``opt.step`` (or a whole training step). There the drop-ins
must be captured as torch.optim's are: one graph, no graph break, no recompile from one
step to the next, the state prepared by ``_init_group`` outside the trace, and the same
numbers as torch.optim. Most tests here count what dynamo does with a counting backend
(the graph then runs without inductor, so equality is checked to float64 round-off); one
runs inductor itself.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import pytest
import torch
import torch._dynamo
import torch._dynamo.testing
from torch._dynamo.utils import counters

import descentlab.torch as dt
from helpers import rel_err

with warnings.catch_warnings():
    # dynamo imports inductor's CUDA-graph module while it guards an optimizer, and that
    # import warns (torch.utils.mkldnn uses a deprecated torch.jit decorator): torch's
    # warning, raised here once, before warnings become errors in the tests
    warnings.simplefilter("ignore", DeprecationWarning)
    import torch._inductor.cudagraph_trees

STEPS = 5

# (name, kwargs): element-wise rules with a torch.optim twin, each with its structure
# switched on (nesterov, amsgrad, centered...), so every coefficient path is traced.
CASES: list[tuple[str, dict[str, Any]]] = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.5}),
    ("Adam", {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1}),
    ("AdamW", {"lr": 0.01}),
    ("AdamW", {"lr": 0.01, "maximize": True, "amsgrad": True}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.5, "centered": True}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1}),
    ("Adadelta", {"lr": 1.0, "weight_decay": 0.1}),
    ("Adamax", {"lr": 0.01}),
    ("NAdam", {"lr": 0.01, "decoupled_weight_decay": True, "weight_decay": 0.1}),
    ("RAdam", {"lr": 0.01}),  # the rectification switches on at step 6
    ("ASGD", {"lr": 0.01, "t0": 2}),  # averaging starts within the run
    ("Rprop", {"lr": 0.01}),
]


def _ids(case: tuple[str, dict[str, Any]]) -> str:
    name, kw = case
    return name + "".join(f"-{k}" for k in kw if k != "lr")


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 4), torch.nn.Linear(4, 1)
    ).double()
    model[3].weight.requires_grad_(False)  # a frozen weight: no gradient, never stepped
    return model


def _batch(step: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(100 + step)
    return torch.randn(16, 6, generator=gen, dtype=torch.float64)


def _loss(model: torch.nn.Module, step: int, x: torch.Tensor | None = None) -> torch.Tensor:
    x = _batch(step) if x is None else x
    return (model(x) - x[:, :1]).square().mean()


def _run(
    opt: torch.optim.Optimizer, model: torch.nn.Module, steps: int, first: int = 0, step: Any = None
) -> None:
    """Steps ``first``..``first + steps - 1`` of the loop; ``step``: what steps (a compiled
    ``opt.step``; default the plain one)."""
    for i in range(first, first + steps):
        opt.zero_grad()
        _loss(model, i).backward()
        (step or opt.step)()


def _pair(name: str, kw: dict[str, Any]) -> tuple[Any, ...]:
    ours_model, torch_model = _model(), _model()
    ours = getattr(dt, name)(ours_model.parameters(), **copy.deepcopy(kw))
    theirs = getattr(torch.optim, name)(torch_model.parameters(), **copy.deepcopy(kw))
    return ours, ours_model, theirs, torch_model


def _same(ours: Any, ours_model: Any, theirs: Any, torch_model: Any, tol: float) -> None:
    for a, b in zip(ours_model.parameters(), torch_model.parameters(), strict=True):
        assert rel_err(a, b) < tol
    for p, q in zip(ours_model.parameters(), torch_model.parameters(), strict=True):
        mine, its = ours.state.get(p, {}), theirs.state.get(q, {})
        assert set(mine) == set(its)
        for key in mine:
            assert rel_err(mine[key], its[key]) < tol, key


def _compiled_step(opt: torch.optim.Optimizer, backend: Any) -> Any:
    """``opt.step`` compiled as torch's documentation does it, with a fresh dynamo."""
    torch._dynamo.reset()
    counters.clear()
    return torch.compile(opt.step, backend=backend)


def _breaks() -> int:
    return sum(counters["graph_break"].values())


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_one_graph_no_break_no_recompile_and_torchs_numbers(case: tuple[str, dict]) -> None:
    name, kw = case
    ours, model, theirs, torch_model = _pair(name, kw)
    count = torch._dynamo.testing.CompileCounter()
    step = _compiled_step(ours, count)
    _run(ours, model, STEPS + 2, step=step)
    assert count.frame_count == 1, f"{count.frame_count} graphs (a recompile or a break)"
    assert _breaks() == 0, dict(counters["graph_break"])
    stepped = sum(p.requires_grad for p in model.parameters())
    assert ours.engine_counts["traced"] == (STEPS + 2) * stepped
    assert ours.engine_counts["reference"] == 0
    _run(theirs, torch_model, STEPS + 2)
    _same(ours, model, theirs, torch_model, 1e-12)


def test_the_state_carries_on_outside_the_compiled_step() -> None:
    """Compiled steps, then plain ones (the eager and reference engines), then compiled
    again: one run, equal to torch.optim's."""
    ours, model, theirs, torch_model = _pair("AdamW", {"lr": 0.01})
    step = _compiled_step(ours, "eager")
    _run(ours, model, 3, step=step)
    _run(ours, model, 3, first=3)
    _run(ours, model, 2, first=6, step=step)
    _run(theirs, torch_model, 8)
    _same(ours, model, theirs, torch_model, 1e-12)
    assert ours.engine_counts["traced"] == 5 * 5
    assert (
        ours.engine_counts["traced"]
        + sum(v for k, v in ours.engine_counts.items() if k != "traced")
        == 8 * 5
    )


@pytest.mark.parametrize("tensor_lr", [False, True], ids=["float-lr", "tensor-lr"])
def test_a_scheduled_lr_recompiles_no_more_than_torch_optim(tensor_lr: bool) -> None:
    """torch recommends a tensor lr with a scheduler under compile: then neither recompiles;
    with a float lr ours compiles no more graphs than torch.optim's."""
    frames = {}
    for which in ("ours", "torch"):
        model = _model()
        lr: Any = torch.tensor(0.01, dtype=torch.float64) if tensor_lr else 0.01
        cls = dt.AdamW if which == "ours" else torch.optim.AdamW
        opt = cls(model.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0 / (1 + k))
        count = torch._dynamo.testing.CompileCounter()
        step = _compiled_step(opt, count)
        for i in range(STEPS):
            opt.zero_grad()
            _loss(model, i).backward()
            step()
            sched.step()
        frames[which] = (count.frame_count, _breaks())  # the scheduler's wrapper breaks
        if which == "ours":
            assert opt.engine_counts["traced"] == STEPS * 5
            ours_params = [p.detach().clone() for p in model.parameters()]
    # the numbers: torch.optim's eager step (its compiled one computes the bias
    # corrections from a float32 step count, 5e-7 away; ours in float64)
    model = _model()
    lr = torch.tensor(0.01, dtype=torch.float64) if tensor_lr else 0.01
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0 / (1 + k))
    for i in range(STEPS):
        _run(opt, model, 1, first=i)
        sched.step()
    for a, b in zip(ours_params, model.parameters(), strict=True):
        assert rel_err(a, b) < 1e-12
    assert frames["ours"] <= frames["torch"], frames
    if tensor_lr:
        assert frames["ours"][0] == 1  # one graph for every step: no recompile


def test_inductor_fuses_the_step_and_matches_torch_optim_under_the_same_compile() -> None:
    """The real compiler: inductor builds our traced AdamW and torch.optim's, float32."""
    models = [_model().float(), _model().float()]
    ours = dt.AdamW(models[0].parameters(), lr=0.01, weight_decay=0.1)
    theirs = torch.optim.AdamW(models[1].parameters(), lr=0.01, weight_decay=0.1)
    steps = [_compiled_step(ours, "inductor")]
    steps.append(torch.compile(theirs.step, backend="inductor"))
    breaks = {}
    for i in range(STEPS):
        gen = torch.Generator().manual_seed(i)
        x = torch.randn(16, 6, generator=gen)
        for opt, model, step in zip((ours, theirs), models, steps, strict=True):
            opt.zero_grad()
            (model(x) - x[:, :1]).square().mean().backward()
            before = _breaks()
            step()
            breaks[opt is ours] = breaks.get(opt is ours, 0) + _breaks() - before
    assert breaks[True] == 0, dict(counters["graph_break"])  # torch's has one, by design
    assert ours.engine_counts["traced"] == STEPS * 5
    for a, b in zip(*(m.parameters() for m in models), strict=True):
        assert rel_err(a, b) < 1e-5


@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
def test_a_whole_compiled_training_step_breaks_where_torch_optim_breaks() -> None:
    """forward, backward and step in one compiled function: as many graphs as torch.optim's,
    no more graph breaks (the backward breaks both)."""
    found = {}
    for which in ("ours", "torch"):
        model = _model()
        cls = dt.Adam if which == "ours" else torch.optim.Adam
        opt = cls(model.parameters(), lr=0.01)

        def train_step(x: torch.Tensor, model: Any = model, opt: Any = opt) -> torch.Tensor:
            opt.zero_grad()
            loss = _loss(model, 0, x)
            loss.backward()
            opt.step()
            return loss

        count = torch._dynamo.testing.CompileCounter()
        compiled = _compiled_step(opt, count)  # resets dynamo and the counters
        compiled = torch.compile(train_step, backend=count)
        for i in range(STEPS):
            compiled(_batch(i))
        found[which] = (
            count.frame_count,
            _breaks(),
            [p.detach().clone() for p in model.parameters()],
        )
        if which == "ours":
            assert opt.engine_counts["traced"] == STEPS * 5
    assert found["ours"][0] == found["torch"][0]  # graphs
    assert found["ours"][1] <= found["torch"][1]  # breaks
    model = _model()  # the numbers: torch.optim's eager step (see the lr test above)
    _run(torch.optim.Adam(model.parameters(), lr=0.01), model, STEPS)
    for a, b in zip(found["ours"][2], model.parameters(), strict=True):
        assert rel_err(a, b) < 1e-12


def test_measurement_and_skipping_inside_the_compiled_step() -> None:
    """measure_next_step works inside the trace; skip_nonfinite (a decision on data) keeps
    the plain path, correct, with its graph breaks."""
    model = _model()
    opt = dt.Adam(model.parameters(), lr=0.01)
    step = _compiled_step(opt, "eager")
    _loss(model, 0).backward()
    before = [p.detach().clone() for p in model.parameters()]
    assert opt.measure_next_step()
    step()
    stats = opt.take_step_measurements()
    assert stats is not None and len(stats) == 5
    for p, old in zip(model.parameters(), before, strict=True):
        if p.requires_grad:
            delta = float((p.detach() - old).square().sum())
            assert stats[id(p)][0].item() == pytest.approx(delta, rel=1e-9)

    model = _model()
    opt = dt.Adam(model.parameters(), lr=0.01, skip_nonfinite=True)
    step = _compiled_step(opt, "eager")
    _loss(model, 0).backward()
    next(model.parameters()).grad[0, 0] = float("nan")
    before = [p.detach().clone() for p in model.parameters()]
    step()
    assert opt.skipped_steps == 1
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))


def test_rules_that_are_not_elementwise_stay_correct_under_compile() -> None:
    """Adafactor reads norms on the host: it keeps the reference path (graph breaks),
    with torch.optim's numbers."""
    ours, model, theirs, torch_model = _pair("Adafactor", {"lr": 0.01})
    _run(ours, model, 3, step=_compiled_step(ours, "eager"))
    _run(theirs, torch_model, 3)
    _same(ours, model, theirs, torch_model, 1e-12)
    assert ours.engine_counts["traced"] == 0
    assert ours.engine_counts["reference"] == 3 * 5


def test_engine_counts_survive_copies_and_loading() -> None:
    ours, model, *_ = _pair("SGD", {"lr": 0.1, "momentum": 0.9})
    step = _compiled_step(ours, "eager")
    _loss(model, 0).backward()
    step()
    assert ours.engine_counts["traced"] == 5
    twin = copy.deepcopy(ours)
    assert twin.engine_counts == ours.engine_counts
    fresh = dt.SGD(model.parameters(), lr=0.1, momentum=0.9)
    fresh.load_state_dict(ours.state_dict())
    assert fresh.engine_counts["traced"] == 0  # counts are the object's, not the checkpoint's


def test_a_group_whose_step_counts_differ_in_dtype_steps_outside_the_graph() -> None:
    """Step counts of two dtypes (a checkpoint loaded into part of a group) do not stack
    into one vector: that group leaves the graph once and steps as outside it, correctly."""
    ours, model, theirs, torch_model = _pair("Adam", {"lr": 0.01})
    _run(ours, model, 1)
    _run(theirs, torch_model, 1)
    first = next(p for p in model.parameters() if p.requires_grad)
    ours.state[first]["step"] = ours.state[first]["step"].double()
    _run(ours, model, 2, first=1, step=_compiled_step(ours, "eager"))
    _run(theirs, torch_model, 2, first=1)
    _same(ours, model, theirs, torch_model, 1e-12)
    assert ours.engine_counts["traced"] == 0
    assert _breaks() >= 1


def test_importing_the_drop_ins_leaves_the_compiler_unloaded() -> None:
    """Support for the user's torch.compile costs no start-up: ``import descentlab.torch``
    loads no dynamo (a second on 2 cores), as ``import torch.optim`` loads none (torch's
    optimizers load it when one is built; the CLI and the NumPy API never do)."""
    import subprocess
    import sys

    code = "import sys, torch.optim, descentlab.torch\nprint('torch._dynamo' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stdout + out.stderr
