"""The default engine keeps the drop-in promise: nothing the ecosystem sees changes.

Each test runs the loop users write (fresh gradients from backward, ``zero_grad()`` with its
default) against ``torch.optim`` on the same setup, and asserts through ``engine_counts``
that the fast path really ran (or really fell back) where it must.
"""

from __future__ import annotations

import copy
import io
import pickle
import warnings
from collections.abc import Callable

import pytest
import torch

import descentlab.torch as dt
from descentlab.engines import compiled
from helpers import rel_err, watch_eager_calls

TOL = 1e-12


def _fast(opt) -> int:  # type: ignore[no-untyped-def]
    """Parameter updates on a fast path: the eager engine (the default's first steps) or a
    compiled kernel."""
    return int(opt.engine_counts["eager"] + opt.engine_counts["compiled"])


def _net(seed: int = 0, layers: int = 9, dtype: torch.dtype = torch.float64) -> torch.nn.Module:
    torch.manual_seed(seed)
    mods: list[torch.nn.Module] = []
    for _ in range(layers):
        mods += [torch.nn.Linear(6, 6), torch.nn.Tanh()]
    return torch.nn.Sequential(*mods, torch.nn.Linear(6, 2)).to(dtype)  # 20 tensors


def _train(model, opt, steps: int = 8, seed: int = 1, hook=None) -> None:  # type: ignore[no-untyped-def]
    gen = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    for step in range(steps):
        x = torch.randn(16, 6, generator=gen, dtype=torch.float64).to(dtype)
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        if hook is not None:
            hook(step, model, opt)
        opt.step()


def _assert_same(model, twin, opt, ref, tol: float = TOL) -> None:  # type: ignore[no-untyped-def]
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert rel_err(p, q) <= tol
        mine, theirs = opt.state.get(p, {}), ref.state.get(q, {})
        assert set(theirs) <= set(mine)  # descentlab's SGD also keeps a step count
        for key, value in theirs.items():
            assert rel_err(mine[key], value) <= tol, key


def test_default_engine_never_moves_storage_and_equals_torch() -> None:
    model, twin = _net(), _net()
    ptrs = [(p.data_ptr(), p.untyped_storage().data_ptr()) for p in model.parameters()]
    opt = dt.AdamW(model.parameters(), lr=1e-2)
    ref = torch.optim.AdamW(twin.parameters(), lr=1e-2)
    seen: list[tuple[int, ...]] = []

    def grads_in_place(step, m, o):  # type: ignore[no-untyped-def]
        seen.append(tuple(p.grad.data_ptr() for p in m.parameters()))

    _train(model, opt, hook=grads_in_place)
    _train(twin, ref)
    assert _fast(opt) == 8 * 20  # every parameter, every step, on the fast path
    assert opt.engine_counts["reference"] == 0
    assert [(p.data_ptr(), p.untyped_storage().data_ptr()) for p in model.parameters()] == ptrs
    for p in model.parameters():  # each parameter and each state tensor owns its storage
        assert p.untyped_storage().nbytes() == p.numel() * p.element_size()
        for value in opt.state[p].values():
            assert value.untyped_storage().nbytes() == value.numel() * value.element_size()
    _assert_same(model, twin, opt, ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_compiled_engine_in_low_precision_matches_the_reference(dtype: torch.dtype) -> None:
    runs = []
    for engine in ("reference", "compiled"):
        model = _net(dtype=dtype)
        opt = dt.Adam(model.parameters(), lr=1e-2, engine=engine)
        _train(model, opt)
        runs.append((model, opt))
    (ref_model, ref), (model, opt) = runs
    assert _fast(opt) == 8 * 20
    tol = 2e-6 if dtype == torch.float32 else 1e-2
    _assert_same(model, ref_model, opt, ref, tol)


def test_a_late_gradient_gets_its_own_step_count_and_stays_on_the_fast_path() -> None:
    model, twin = _net(), _net()
    opt = dt.Adam(model.parameters(), lr=1e-2)
    ref = torch.optim.Adam(twin.parameters(), lr=1e-2)

    def late(step, m, o):  # type: ignore[no-untyped-def]
        if step < 3:
            m[0].weight.grad = None  # its first gradient arrives at step 3
        if step == 5:
            m[2].bias.grad = None  # and another one misses a step mid-run

    _train(model, opt, hook=late)
    _train(twin, ref, hook=late)
    assert opt.state[model[0].weight]["step"].item() == 5
    assert opt.state[model[2].bias]["step"].item() == 7
    assert _fast(opt) == 8 * 20 - 3 - 1  # never pushed off the fast path
    assert opt.engine_counts["reference"] == 0
    _assert_same(model, twin, opt, ref)


def test_state_replaced_on_any_parameter_is_seen() -> None:
    model, twin = _net(), _net()
    opt = dt.Adam(model.parameters(), lr=1e-2)
    ref = torch.optim.Adam(twin.parameters(), lr=1e-2)

    def reset(step, m, o):  # type: ignore[no-untyped-def]
        if step == 4:  # not the first parameter: every parameter's state is checked
            o.state[list(m.parameters())[7]] = {}
        if step == 5:  # each change on a step of its own, so each check must see its own
            params = list(m.parameters())
            o.state[params[11]]["exp_avg"] = torch.zeros_like(params[11])
        if step == 6:  # written in place: the host's mirror of the step counts must see it
            o.state[list(m.parameters())[13]]["step"].fill_(1.0)

    _train(model, opt, hook=reset)
    _train(twin, ref, hook=reset)
    _assert_same(model, twin, opt, ref)


@pytest.mark.parametrize("name", ["Adam", "SGD"])
def test_duplicate_and_tied_parameters_step_as_in_torch(name: str) -> None:
    # torch.optim.SGD gathers momentum buffers before stepping, so a parameter listed twice
    # starts two buffers at its first step (the last one wins); every later step, and Adam
    # always, step the parameter twice in a row, which is what descentlab does. The SGD case
    # therefore ties parameters without listing one twice.
    duplicate = name == "Adam"

    def build(seed: int) -> tuple[torch.nn.Module, list[torch.nn.Parameter]]:
        model = _net(seed)
        params = list(model.parameters())
        model[2].weight.data = model[0].weight.data  # tied through .data: one storage
        return model, [*params, params[4]] if duplicate else params

    hp = {"lr": 1e-2} if duplicate else {"lr": 0.1, "momentum": 0.9}
    model, params = build(0)
    twin, twin_params = build(0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "optimizer contains a parameter group with duplicate")
        opt = getattr(dt, name)(params, **hp)
        ref = getattr(torch.optim, name)(twin_params, **hp)
    _train(model, opt)
    _train(twin, ref)
    assert model[2].weight.data_ptr() == model[0].weight.data_ptr()  # still tied
    clashing = 4 if duplicate else 2  # both tied entries (and both entries of the duplicate)
    assert _fast(opt) == 8 * (len(params) - clashing)
    assert opt.engine_counts["reference"] == 8 * clashing
    _assert_same(model, twin, opt, ref)


@pytest.mark.parametrize("engine", ["flat", "flat-eager"])
def test_flat_engine_refuses_what_it_cannot_rehome(engine: str) -> None:
    model, twin = _net(), _net()
    model[2].weight.data = model[0].weight.data
    twin[2].weight.data = twin[0].weight.data
    opt = dt.Adam(model.parameters(), lr=1e-2, engine=engine)
    ref = torch.optim.Adam(twin.parameters(), lr=1e-2)
    with pytest.warns(RuntimeWarning, match="share memory") as record:
        _train(model, opt)
    assert len(record) == 1  # one warning, not one per step
    _train(twin, ref)
    assert opt.engine_counts[engine] == 0 and not opt._buckets
    assert model[2].weight.data_ptr() == model[0].weight.data_ptr()
    _assert_same(model, twin, opt, ref)


def test_flat_engine_is_opt_in_observable_and_unflattens_for_saving(tmp_path) -> None:  # type: ignore[no-untyped-def]
    safetensors_torch = pytest.importorskip("safetensors.torch")
    model, twin = _net(), _net()
    opt = dt.Adam(model.parameters(), lr=1e-2, engine="flat")
    ref = torch.optim.Adam(twin.parameters(), lr=1e-2)
    _train(model, opt)
    _train(twin, ref)
    assert opt.engine_counts["flat"] == 8 * 20
    ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
    assert len(ptrs) == 1  # re-homed: what the README warns about
    with pytest.raises(RuntimeError):
        safetensors_torch.save_model(model, str(tmp_path / "shared.safetensors"))
    opt.unflatten()
    assert len({p.untyped_storage().data_ptr() for p in model.parameters()}) == 20
    safetensors_torch.save_model(model, str(tmp_path / "model.safetensors"))
    _train(model, opt, seed=2)  # re-homes again and goes on in lock-step
    _train(twin, ref, seed=2)
    assert opt.engine_counts["flat"] == 16 * 20
    _assert_same(model, twin, opt, ref)


@pytest.mark.parametrize(
    "restore",
    ["load_state_dict", "pickle", "deepcopy"],
)
def test_settings_survive_resume(restore: str) -> None:
    model = _net()
    opt = dt.Adam(model.parameters(), lr=1e-2, skip_nonfinite=True, engine="compiled")
    model[0].weight.grad = torch.full_like(model[0].weight, float("nan"))
    opt.step()
    assert opt.skipped_steps == 1
    if restore == "load_state_dict":
        fresh = dt.Adam(model.parameters(), lr=1e-2, skip_nonfinite=True, engine="compiled")
        fresh.skipped_steps = 1
        fresh.load_state_dict(opt.state_dict())  # ends in __setstate__, as in torch
        restored = fresh
    elif restore == "pickle":
        restored = pickle.loads(pickle.dumps(opt))
    else:
        restored = copy.deepcopy(opt)
    assert restored.engine == "compiled"
    assert restored.skip_nonfinite is True
    assert restored.skipped_steps == 1
    if restore == "load_state_dict":
        before = model[0].weight.detach().clone()
        restored.step()  # the NaN gradient must still be refused
        assert torch.equal(model[0].weight, before)
        assert restored.skipped_steps == 2


def test_safetensors_save_model_round_trip_after_default_training(tmp_path) -> None:  # type: ignore[no-untyped-def]
    safetensors_torch = pytest.importorskip("safetensors.torch")
    model, twin = _net(), _net()
    opt = dt.AdamW(model.parameters(), lr=1e-2)
    ref = torch.optim.AdamW(twin.parameters(), lr=1e-2)
    _train(model, opt)
    _train(twin, ref)
    assert _fast(opt) > 0
    path = tmp_path / "model.safetensors"
    safetensors_torch.save_model(model, str(path))  # refuses shared storage
    loaded = _net(seed=5)
    missing, unexpected = safetensors_torch.load_model(loaded, str(path))
    assert not missing and not unexpected
    for p, q in zip(loaded.parameters(), twin.parameters(), strict=True):
        assert rel_err(p, q) <= TOL
    # one layer's state_dict holds that layer only
    buf = io.BytesIO()
    torch.save(model[0].state_dict(), buf)
    assert buf.tell() < 4 * 1024  # 42 float64 weights; a shared buffer would be ~8x that


def test_compile_unavailable_falls_back_with_one_warning(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(compiled, "_KERNELS", {})
    monkeypatch.setattr(compiled, "_FAILED", {})
    monkeypatch.setattr(torch, "compile", broken)
    model, twin = _net(), _net()
    opt = dt.RMSprop(model.parameters(), lr=1e-2, engine="compiled")
    ref = torch.optim.RMSprop(twin.parameters(), lr=1e-2)
    with pytest.warns(RuntimeWarning, match="unavailable") as record:
        _train(model, opt)
    assert len(record) == 1
    _train(twin, ref)
    assert opt.engine_counts["compiled"] == 0
    assert opt.engine_counts["eager"] == 8 * 20  # the eager engine, not the slow reference
    _assert_same(model, twin, opt, ref)


def test_gradients_the_kernel_cannot_read_in_place_go_to_the_reference() -> None:
    model, twin = _net(), _net()
    opt = dt.Adam(model.parameters(), lr=1e-2, engine="compiled")
    ref = torch.optim.Adam(twin.parameters(), lr=1e-2)

    def odd(step, m, o):  # type: ignore[no-untyped-def]
        if step == 2:  # a transposed (non-contiguous) gradient, assigned by user code
            g = m[4].weight.grad
            m[4].weight.grad = g.t().contiguous().t()
            assert not m[4].weight.grad.is_contiguous()

    _train(model, opt, hook=odd)
    _train(twin, ref, hook=odd)
    assert opt.engine_counts["reference"] == 1
    assert opt.engine_counts["compiled"] == 8 * 20 - 1
    _assert_same(model, twin, opt, ref)


def test_state_the_kernel_cannot_read_in_place_goes_to_the_reference() -> None:
    """A slot tensor that is not contiguous (as a loaded or user-edited state can be): the
    kernel reads state through 1-D views, so that parameter is stepped by the reference."""
    model, twin = _net(), _net()
    opt = dt.Adam(model.parameters(), lr=1e-2, engine="compiled")
    ref = torch.optim.Adam(twin.parameters(), lr=1e-2)

    def odd(step, m, o):  # type: ignore[no-untyped-def]
        if step == 3:  # the same numbers, transposed in memory
            state = o.state[m[4].weight]
            state["exp_avg_sq"] = state["exp_avg_sq"].t().contiguous().t()
            assert not state["exp_avg_sq"].is_contiguous()

    _train(model, opt, hook=odd)
    _train(twin, ref, hook=odd)
    assert opt.engine_counts["reference"] == 8 - 3  # from step 3 on, written back in place
    assert opt.engine_counts["compiled"] == 8 * 20 - (8 - 3)
    _assert_same(model, twin, opt, ref)


def test_auto_leaves_small_groups_to_the_reference() -> None:
    model = torch.nn.Linear(3, 1)
    opt = dt.Adam(model.parameters())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(torch.ones(2, 3)).sum().backward()
        opt.step()
    assert opt.engine_counts == {**opt.engine_counts, "reference": 2, "compiled": 0}


def test_parameters_tied_mid_run_leave_the_fast_path_together() -> None:
    model, twin = _net(), _net()
    opt = dt.Adam(model.parameters(), lr=1e-2, engine="compiled")
    ref = torch.optim.Adam(twin.parameters(), lr=1e-2)

    def tie(step, m, o):  # type: ignore[no-untyped-def]
        if step == 3:  # tied after the optimizer was built: the overlap is found then
            with torch.no_grad():
                m[2].weight.data = m[0].weight.data

    _train(model, opt, hook=tie)
    _train(twin, ref, hook=tie)
    assert model[2].weight.data_ptr() == model[0].weight.data_ptr()
    assert opt.engine_counts["reference"] == 5 * 2  # both tied ones, from step 3 on
    assert opt.engine_counts["compiled"] == 8 * 20 - 5 * 2
    _assert_same(model, twin, opt, ref)


def test_accelerate_save_model_and_save_state_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    accelerate = pytest.importorskip("accelerate")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    hp = {"lr": 1e-2, "weight_decay": 0.05}
    model, twin = _net(), _net()
    ref = torch.optim.AdamW(twin.parameters(), **hp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # accelerate's own deprecations, not ours
        accelerator = accelerate.Accelerator(cpu=True)
        model, opt = accelerator.prepare(
            model, dt.AdamW(model.parameters(), **hp, skip_nonfinite=True)
        )
    inner = opt.optimizer  # accelerate wraps the optimizer
    _train(model, opt)
    _train(twin, ref)
    assert _fast(inner) == 8 * 20
    accelerator.save_model(model, str(tmp_path / "model"))  # drops storage it sees as shared
    saved = safetensors_torch.load_file(str(tmp_path / "model" / "model.safetensors"))
    assert len(saved) == 20
    for (name, _p), q in zip(model.named_parameters(), twin.parameters(), strict=True):
        assert rel_err(saved[name], q) <= TOL
    accelerator.save_state(str(tmp_path / "state"))

    resumed_model = _net(seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = accelerate.Accelerator(cpu=True)  # a new run resuming
        resumed_model, resumed = again.prepare(
            resumed_model, dt.AdamW(resumed_model.parameters(), **hp, skip_nonfinite=True)
        )
        again.load_state(str(tmp_path / "state"))
    assert resumed.optimizer.skip_nonfinite is True  # survives load_state_dict
    _train(resumed_model, resumed, seed=3)
    _train(twin, ref, seed=3)
    _assert_same(resumed_model, twin, resumed.optimizer, ref)


def test_a_mixed_group_splits_between_engines_and_equals_the_reference() -> None:
    def build() -> list[torch.nn.Parameter]:
        gen = torch.Generator().manual_seed(21)
        make = [
            lambda: torch.randn(6, 5, generator=gen),  # float32
            lambda: torch.randn(40000, generator=gen),  # float32, the large kernel
            lambda: torch.randn(7, generator=gen).to(torch.bfloat16),
            lambda: torch.randn(4, 3, generator=gen, dtype=torch.float64),
            lambda: torch.randn(3, 4, generator=gen).t(),  # non-contiguous: reference
            lambda: torch.randn((), generator=gen),  # 0-dim: reference
            lambda: torch.randn(5, generator=gen, dtype=torch.complex64),  # complex: reference
        ]
        return [torch.nn.Parameter(f()) for f in make]

    runs = []
    for engine in ("reference", "compiled"):
        params = build()
        opt = dt.AdamW(params, lr=1e-2, engine=engine)
        gen = torch.Generator().manual_seed(22)
        for _ in range(6):
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            opt.step()
        runs.append((params, opt))
    (ref_params, ref), (params, opt) = runs
    assert opt.engine_counts["compiled"] == 6 * 4
    assert opt.engine_counts["reference"] == 6 * 3
    for p, q in zip(params, ref_params, strict=True):
        tol = 1e-2 if p.dtype == torch.bfloat16 else 2e-6
        assert rel_err(p, q) <= tol
        for key, value in ref.state[q].items():
            assert rel_err(opt.state[p][key], value) <= tol, key


def test_a_kernel_failing_mid_step_leaves_every_parameter_one_whole_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A step is all or nothing: when a compiled chunk raises (a kernel built earlier that now
    fails), that chunk and the ones after it are stepped by the reference engine, so every
    parameter takes exactly one step; one warning; the kernel is not called again."""
    model, twin = _net(layers=19), _net(layers=19)  # 40 tensors: three chunks of up to 16
    opt = dt.AdamW(model.parameters(), lr=1e-2, engine="compiled")
    ref = dt.AdamW(twin.parameters(), lr=1e-2, engine="reference")
    calls = {"n": 0}
    real_call = compiled.Kernel.__call__

    def flaky(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1 + 3 + 2:  # (the first call checked on copies) step 2, chunk 2
            raise RuntimeError("planted kernel failure")
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(compiled.Kernel, "__call__", flaky)
    monkeypatch.setattr(compiled, "_FAILED", {})
    # checked at its first call whether an earlier test trusted it or not (the test alone)
    monkeypatch.setattr(compiled, "_TRUSTED", set())
    with pytest.warns(RuntimeWarning, match="planted kernel failure"):
        _train(model, opt, steps=3)
    _train(twin, ref, steps=3)
    assert [float(opt.state[p]["step"]) for p in model.parameters()] == [3.0] * 40
    _assert_same(model, twin, opt, ref)
    # step 1: 40 compiled; step 2: the first chunk (16) compiled, 24 on the reference;
    # step 3: the failed kernel is retired, the eager engine steps all 40
    assert opt.engine_counts["compiled"] == 40 + 16
    assert opt.engine_counts["reference"] == 24
    assert opt.engine_counts["eager"] == 40
    assert calls["n"] == 1 + 3 + 2


def test_an_eager_call_failing_mid_step_leaves_every_parameter_one_whole_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The eager engine's calls that finished keep their step; the failing call's parameters
    and the later ones are the reference engine's for that step: every parameter takes
    exactly one step (none twice); one warning; the engine is not used again."""
    from descentlab.engines import policy

    model, twin = _net(layers=19), _net(layers=19)  # 40 tensors
    opt = dt.AdamW(model.parameters(), lr=1e-2, engine="eager")
    ref = dt.AdamW(twin.parameters(), lr=1e-2, engine="reference")

    def flaky(n: int) -> None:
        if n == 2 + 40 + 7:  # (the first call checked on copies, both forms) step 2, call 7
            raise RuntimeError("planted eager failure")

    watch_eager_calls(monkeypatch, flaky)
    monkeypatch.setattr(compiled, "_EAGER_FAILED", {})
    monkeypatch.setattr(
        compiled, "_TRUSTED", set()
    )  # its first call is checked, as in a fresh process
    monkeypatch.setitem(policy.EAGER_BATCH, "cpu", 1)  # one call per tensor
    with pytest.warns(RuntimeWarning, match="planted eager failure"):
        _train(model, opt, steps=3)
    _train(twin, ref, steps=3)
    assert [float(opt.state[p]["step"]) for p in model.parameters()] == [3.0] * 40
    _assert_same(model, twin, opt, ref)
    assert opt.engine_counts["eager"] == 40 + 6  # step 1 all, step 2 the six calls before
    assert opt.engine_counts["reference"] == 34 + 40


def test_an_eager_call_failing_in_the_middle_of_a_cut_tensor_finishes_that_tensor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tensor cut into pieces whose third piece fails: its first two pieces have stepped,
    so the reference engine steps its other pieces (not the whole tensor again); the later
    tensors are the reference's for that step. Every parameter takes exactly one step."""
    from descentlab.engines import policy

    model, twin = _net(layers=19), _net(layers=19)  # 40 tensors: 6 x 6 weights, 6 biases
    opt = dt.AdamW(model.parameters(), lr=1e-2, engine="eager")
    ref = dt.AdamW(twin.parameters(), lr=1e-2, engine="reference")

    # a step's calls: 4 pieces of a weight, its bias, ... (19 times), then the last layer
    def flaky(n: int) -> None:
        if n == 2 + 96 + 13:  # (the first call checked, both forms) step 2: w2's third piece
            raise RuntimeError("planted eager failure")

    calls = watch_eager_calls(monkeypatch, flaky)
    monkeypatch.setattr(compiled, "_EAGER_FAILED", {})
    monkeypatch.setattr(compiled, "_TRUSTED", set())
    monkeypatch.setitem(policy.EAGER_SPLIT, "cpu", 20)
    monkeypatch.setattr(policy, "EAGER_PIECE", 10)  # 10, 10, 10, 6
    with pytest.warns(RuntimeWarning, match="planted eager failure"):
        _train(model, opt, steps=3)
    _train(twin, ref, steps=3)
    assert calls["n"] == 2 + 96 + 13
    assert [float(opt.state[p]["step"]) for p in model.parameters()] == [3.0] * 40
    _assert_same(model, twin, opt, ref)
    assert opt.engine_counts["eager"] == 40 + 5  # step 2: w0, b0, w1, b1 and the cut w2
    assert opt.engine_counts["reference"] == 35 + 40


@pytest.mark.parametrize("how", ["replaced", "written"])
def test_a_step_count_set_by_the_user_between_steps_is_read(how: str) -> None:
    """``opt.state[p]["step"]`` replaced by a new tensor, or written in place, between two
    steps: the next step's bias correction uses it, as torch.optim's does."""
    model, twin = _net(), _net()
    opt = dt.Adam(model.parameters(), lr=1e-2, engine="eager")
    ref = torch.optim.Adam(twin.parameters(), lr=1e-2)

    def restart(step: int, net: torch.nn.Module, o: torch.optim.Optimizer) -> None:
        if step != 4:
            return
        for p in net.parameters():
            if how == "replaced":
                o.state[p]["step"] = torch.tensor(1.0)
            else:
                o.state[p]["step"].fill_(1.0)

    _train(model, opt, steps=7, hook=restart)
    _train(twin, ref, steps=7, hook=restart)
    assert [float(opt.state[p]["step"]) for p in model.parameters()] == [4.0] * 20
    _assert_same(model, twin, opt, ref)


def _transposed(grad: torch.Tensor) -> torch.Tensor:
    out = grad.t().contiguous().t()  # the same values, laid out transposed
    assert not out.is_contiguous()
    return out


def _one_element(grad: torch.Tensor) -> torch.Tensor:
    grad.data = grad.data.reshape(-1)[:1].clone()  # the same object, one element now
    return grad


@pytest.mark.parametrize("change", [_transposed, _one_element], ids=["transposed", "one-element"])
@pytest.mark.parametrize("engine", ["eager", "compiled"])
def test_a_gradient_the_kernels_cannot_read_is_seen_on_the_steady_path(
    engine: str, change: Callable[[torch.Tensor], torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between two steady steps the user hands a weight a gradient of the right shape but
    not contiguous (a transposed tensor), or swaps its ``.data`` for one element (torch.optim
    broadcasts it). The compiled kernels and the cut tensors read a gradient's elements in
    order, as many as the parameter has, so that parameter goes to the reference for the
    step (which broadcasts as torch does); the fast path takes it back at the next step.
    Everything equals torch.optim; the fast path took the others."""
    from descentlab.engines import policy

    monkeypatch.setitem(policy.EAGER_SPLIT, "cpu", 20)  # the 6 x 6 weights are cut
    monkeypatch.setattr(policy, "EAGER_PIECE", 10)
    model, twin = _net(), _net()
    opt = dt.AdamW(model.parameters(), lr=1e-2, engine=engine)
    ref = torch.optim.AdamW(twin.parameters(), lr=1e-2)

    def hook(step: int, net: torch.nn.Module, o: torch.optim.Optimizer) -> None:
        if step == 3:
            weight = net[0].weight
            new = change(weight.grad)
            if new is not weight.grad:  # (assigning checks the size; .data swaps do not)
                weight.grad = new

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a call that fails would warn
        _train(model, opt, steps=6, hook=hook)
    _train(twin, ref, steps=6, hook=hook)
    _assert_same(model, twin, opt, ref)
    assert opt.engine_counts["reference"] == 1
    assert _fast(opt) == 6 * 20 - 1
