"""Every engine equals the reference engine on params AND state, for every case."""

from __future__ import annotations

import copy

import pytest
import torch

from cases import CASES, Case, ids
from descentlab.engines import flat
from helpers import rel_err, watch_eager_calls

ENGINES = ["eager", "compiled", "flat-eager", "flat"]
DEFAULT_PATHS = ("eager", "compiled")  # engines of GroupPlan: no re-homing, any rule
TOL = {torch.float64: 1e-12, torch.float32: 2e-6}


def _model(dtype: torch.dtype) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(11)
    shapes = [(6, 4), (4,), (3, 2, 2), (1,), (5,), (2, 3)]
    return [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype)) for s in shapes]


def _run(case: Case, engine: str, dtype: torch.dtype, steps: int = 24):
    params = _model(dtype)
    params[5].requires_grad_(False)  # frozen: never in a flat buffer, never changed
    groups = [{"params": params[:3]}, {"params": params[3:], "lr": case.hp.get("lr", 1e-3) * 0.3}]
    opt = case.cls(groups, **case.hp, engine=engine)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.97)
    gen = torch.Generator().manual_seed(12)
    for step in range(steps):
        for i, p in enumerate(params[:5]):
            g = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(dtype)
            p.grad = None if (i == 4 and step in (3, 4)) else g  # a None gradient mid-run
        opt.step()
        sched.step()
        if step % 5 == 0:
            opt.zero_grad(set_to_none=step % 10 == 0)  # both ways of zeroing
    return params, opt


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_engine_equals_reference_on_params_and_state(case: Case, engine: str, dtype) -> None:
    ref_params, ref = _run(case, "reference", dtype)
    info = case.cls.info
    rule = info.rule(info.with_defaults(**case.hp))
    if engine not in DEFAULT_PATHS and not rule.runs_flat:
        with pytest.warns(RuntimeWarning, match="not element-wise or keeps per-parameter"):
            params, opt = _run(case, engine, dtype)
    else:
        params, opt = _run(case, engine, dtype)
    if not rule.elementwise or (engine not in DEFAULT_PATHS and rule.scalar_names):
        # Adafactor (whole-tensor), and for the flat engines NAdam/ASGD (per-parameter
        # scalars): handed over, visibly, to the reference or to the default engine
        handed = "reference" if not rule.elementwise else "compiled"
        assert opt.engine_counts[engine] == 0 and opt.engine_counts[handed] > 0
    elif engine in DEFAULT_PATHS:  # every parameter but the 1-element one, None grads aside
        assert opt.engine_counts[engine] == 24 * 4 - 2
    else:
        assert opt.engine_counts[engine] > 0, "the engine never stepped"
        assert not flat._COMPILE_FAILED, "compilation fell back to eager"
    for p, q in zip(params, ref_params, strict=True):
        assert rel_err(p, q) <= TOL[dtype]
        if not q.requires_grad:
            assert torch.equal(p, q)
            continue
        for key, value in ref.state[q].items():
            assert rel_err(opt.state[p][key], value) <= TOL[dtype], key


@pytest.mark.parametrize("engine", ENGINES)
def test_flat_engine_survives_state_dict_round_trip(engine: str) -> None:
    case = next(c for c in CASES if c.id == "adam-amsgrad")
    params, opt = _run(case, engine, torch.float64, steps=6)
    ref_params, ref = _run(case, "reference", torch.float64, steps=6)
    opt.load_state_dict(copy.deepcopy(ref.state_dict()))  # new state tensors: buckets rebuild
    for p, q in zip(params, ref_params, strict=True):
        p.grad, q.grad = torch.ones_like(p), torch.ones_like(q)
    opt.step()
    ref.step()
    for p, q in zip(params, ref_params, strict=True):
        assert rel_err(p, q) <= 1e-12


def test_backward_writes_straight_into_the_flat_gradient_buffer() -> None:
    model = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(10)]).double()
    from descentlab.torch import SGD

    ours = SGD(model.parameters(), lr=0.1, momentum=0.9, engine="flat-eager")
    twin = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(10)]).double()
    twin.load_state_dict(model.state_dict())
    theirs = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(8, 4, dtype=torch.float64)
    for _ in range(5):
        for m, o in ((model, ours), (twin, theirs)):
            o.zero_grad(set_to_none=False)
            m(x).pow(2).mean().backward()
            o.step()
    bucket = next(iter(ours._buckets.values()))
    p = next(model.parameters())
    assert p.grad.data_ptr() == bucket.g_flat.data_ptr()  # no gather copy needed
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert rel_err(p, q) <= 1e-12


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_numpy_compiled_engine_equals_numpy_reference(case: Case) -> None:
    import numpy as np

    from descentlab import numpy as dnp

    cls = getattr(dnp, case.cls.__name__)
    rng = np.random.default_rng(13)
    runs = []
    for engine in ("reference", "compiled"):
        params = [np.random.default_rng(14).standard_normal(s) for s in [(7, 3), (5,)]]
        opt = cls(params, engine=engine, **case.hp)
        rng = np.random.default_rng(15)
        for step in range(20):
            grads = [rng.standard_normal(p.shape) for p in params]
            if step == 3:
                grads[1] = None
            opt.step(grads)
        runs.append((params, opt.state))
    (ref, ref_state), (fast, fast_state) = runs
    assert not flat._COMPILE_FAILED and flat._COMPILED
    for p, q, s, t in zip(fast, ref, fast_state.slots, ref_state.slots, strict=True):
        assert rel_err(torch.from_numpy(p), torch.from_numpy(q)) <= 1e-12
        for key in t:
            assert rel_err(torch.from_numpy(s[key]), torch.from_numpy(t[key])) <= 1e-12


GPU_CASES = [c for c in CASES if c.id in ("sgd-nesterov", "rmsprop-all", "adam-amsgrad", "adamw")]


@pytest.mark.gpu
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", GPU_CASES, ids=ids(GPU_CASES))
def test_engine_equals_reference_on_cuda(case: Case, engine: str) -> None:
    def run(engine: str) -> tuple[list[torch.nn.Parameter], torch.optim.Optimizer]:
        gen = torch.Generator().manual_seed(16)
        params = [
            torch.nn.Parameter(torch.randn(s, generator=gen).cuda()) for s in [(64, 32), (32,)]
        ]
        opt = case.cls(params, **case.hp, engine=engine)
        for _ in range(20):
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen).cuda()
            opt.step()
        return params, opt

    (ref_params, ref), (params, opt) = run("reference"), run(engine)
    assert opt.engine_counts[engine] == 20 * 2  # the engine stepped every parameter
    assert not flat._COMPILE_FAILED
    for p, q in zip(params, ref_params, strict=True):
        assert rel_err(p.cpu(), q.cpu()) <= TOL[torch.float32]
        for key, value in ref.state[q].items():
            assert rel_err(opt.state[p][key].cpu(), value.cpu()) <= TOL[torch.float32], key


@pytest.mark.parametrize("engine", ENGINES)
def test_freezing_and_thawing_mid_run_matches_the_reference(engine: str) -> None:
    case = next(c for c in CASES if c.id == "adam-amsgrad")

    def run(engine: str) -> tuple[list[torch.nn.Parameter], torch.optim.Optimizer]:
        params = _model(torch.float64)
        params[5].requires_grad_(False)
        opt = case.cls(params, **case.hp, engine=engine)
        gen = torch.Generator().manual_seed(17)
        for step in range(12):
            if step == 4:
                params[0].requires_grad_(False)  # freeze a buffered parameter
                params[5].requires_grad_(True)  # thaw one kept outside the buffer
            opt.zero_grad()
            for p in params:
                if p.requires_grad:
                    p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            opt.step()
        return params, opt

    (ref_params, ref), (params, opt) = run("reference"), run(engine)
    for p, q in zip(params, ref_params, strict=True):
        assert rel_err(p, q) <= 1e-12
        for key, value in ref.state[q].items():
            assert rel_err(opt.state[p][key], value) <= 1e-12, key


def test_graph_input_names_are_read_whether_torch_gives_attributes_or_methods() -> None:
    """torch before late 2025 made ``Source.name`` a method (the compiled engine then failed
    on every kernel); later releases make it an attribute. Both are read."""
    from types import SimpleNamespace

    from descentlab.engines.compiled import _source_name

    def node(name: object) -> SimpleNamespace:
        return SimpleNamespace(
            meta={"grapharg": SimpleNamespace(source=SimpleNamespace(name=name))}
        )

    assert _source_name(node("L['ps'][3]")) == "L['ps'][3]"  # type: ignore[arg-type]
    assert _source_name(node(lambda: "L['cmat']")) == "L['cmat']"  # type: ignore[arg-type]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_eager_pieces_of_large_tensors_equal_whole_calls(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tensor over ``policy.EAGER_SPLIT`` elements is stepped in pieces (1-D views, one
    call each): parameters and state equal the reference's, scalars (NAdam's) included."""
    from descentlab.engines import policy

    info = case.cls.info
    if not info.rule(info.with_defaults(**case.hp)).elementwise:
        pytest.skip("the reference engine steps it")
    ref_params, ref = _run(case, "reference", torch.float64)
    calls = watch_eager_calls(monkeypatch)
    monkeypatch.setitem(policy.EAGER_SPLIT, "cpu", 10)  # the 24- and 12-element tensors
    monkeypatch.setattr(policy, "EAGER_PIECE", 7)  # 4 and 2 pieces
    params, opt = _run(case, "eager", torch.float64)
    # a step: the first group's 6 pieces and its 4-element tensor (uncut: 1 call a step)
    assert calls["n"] >= 24 * 7, "the tensors were not cut"
    assert calls["one"] >= 24 * 7, "a piece was not stepped by the per-tensor form"
    assert opt.engine_counts["eager"] == 24 * 4 - 2
    for p, q in zip(params, ref_params, strict=True):
        assert rel_err(p, q) <= TOL[torch.float64]
        for key, value in ref.state[q].items():
            assert rel_err(opt.state[p][key], value) <= TOL[torch.float64], key


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_eager_per_tensor_form_equals_the_list_form_bit_for_bit(case: Case, dtype) -> None:
    """The eager program written out for one tensor (tensor methods) computes exactly what
    its foreach form computes on a list of that tensor: on a CPU torch's foreach ops loop
    over those same methods. Parameters and every slot, bit for bit, at steps 1 and 3."""
    from descentlab.engines import eager

    info = case.cls.info
    hp_all = info.with_defaults(**case.hp)
    rule = info.rule(hp_all)
    if not rule.elementwise:
        pytest.skip("the reference engine steps it")
    hp = info.scalars(hp_all)
    gen = torch.Generator().manual_seed(5)
    for step in (1, 3):
        scalars = {k: torch.tensor(0.9, dtype=dtype) for k in rule.scalar_names}
        c, _ = rule.begin_step(hp, step, scalars)
        names = tuple(c)
        prog = eager.program(rule, names)
        p = torch.randn(257, generator=gen, dtype=torch.float64).to(dtype)
        g = torch.randn(257, generator=gen, dtype=torch.float64).to(dtype)
        slots = [  # positive, each slot below the one before (RMSprop's centred form)
            ((torch.rand(257, generator=gen, dtype=torch.float64) + 0.1) / (k + 1) ** 2).to(dtype)
            for k in range(len(rule.slots))
        ]
        p1, s1 = p.clone(), [s.clone() for s in slots]
        pl, sl = [p.clone()], [[s.clone()] for s in slots]
        row = [c[n] for n in names]
        prog.run_one(p1, g, s1, row)
        prog.run(pl, [g], sl, row)
        assert torch.equal(p1, pl[0]), "parameter"
        for name, a, b in zip(rule.slots, s1, sl, strict=True):
            assert torch.equal(a, b[0]), name
        assert not torch.equal(p1, p), "nothing was stepped"
        assert torch.isfinite(p1).all(), "the data gave no real step to compare"


def test_eager_calls_split_by_the_batch_size_equal_one_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Batches of a few tensors (several calls a step) give what one call gives."""
    from descentlab.engines import policy

    case = next(c for c in CASES if c.cls.__name__ == "AdamW")
    ref_params, ref = _run(case, "reference", torch.float64)
    calls = watch_eager_calls(monkeypatch)
    monkeypatch.setitem(policy.EAGER_BATCH, "cpu", 20)  # a call or two per tensor
    params, opt = _run(case, "eager", torch.float64)
    assert calls["n"] > 2 * 24, "the batches were not split"
    assert calls["one"] > 24, "a call of one tensor was not stepped by the per-tensor form"
    for p, q in zip(params, ref_params, strict=True):
        assert rel_err(p, q) <= TOL[torch.float64]
        for key, value in ref.state[q].items():
            assert rel_err(opt.state[p][key], value) <= TOL[torch.float64], key
