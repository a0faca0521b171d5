"""The default engine never waits for the compiler (issue: no compile tax).

``engine="auto"`` steps with the eager engine from the first step, compiles in a background
thread once the run has spent ``DESCENTLAB_COMPILE_AFTER`` seconds on eager steps, and
switches between two steps; every way compiling can fail leaves the eager engine running
with one warning; every new kernel is checked against the reference before it is trusted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import descentlab.torch as dt
from descentlab.engines import background, compiled, eager
from helpers import rel_err

TOL = 1e-12


def _net(seed: int = 0, layers: int = 9) -> torch.nn.Module:
    torch.manual_seed(seed)
    mods: list[torch.nn.Module] = []
    for _ in range(layers):
        mods += [torch.nn.Linear(6, 6), torch.nn.Tanh()]
    return torch.nn.Sequential(*mods, torch.nn.Linear(6, 2)).double()  # 20 tensors


def _one_step(model: torch.nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator) -> None:
    x = torch.randn(16, 6, generator=gen, dtype=torch.float64)
    y = torch.randn(16, 2, generator=gen, dtype=torch.float64)  # noisy targets: gradients
    opt.zero_grad()  # stay O(1) over thousands of steps, so the state stays comparable
    (model(x) - y).pow(2).mean().backward()
    opt.step()


def _same(model: torch.nn.Module, twin: torch.nn.Module, opt, ref, tol: float = TOL) -> None:  # type: ignore[no-untyped-def]
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert rel_err(p, q) <= tol
        for key, value in ref.state[q].items():
            assert rel_err(opt.state[p][key], value) <= tol, key


def _warned_once_and_same(ours, theirs, steps: int, match: str):  # type: ignore[no-untyped-def]
    """Train ``ours(params)`` beside ``theirs(params)``: one warning matching ``match``, then
    equal parameters and state; returns the descentlab optimizer for its engine_counts."""
    model, twin = _net(), _net()
    opt, ref = ours(model.parameters()), theirs(twin.parameters())
    gen, gen2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    with pytest.warns(RuntimeWarning, match=match) as record:
        for _ in range(steps):
            _one_step(model, opt, gen)
            _one_step(twin, ref, gen2)
    assert len(record) == 1
    _same(model, twin, opt, ref)
    return opt


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No kernel built, failed, trusted or being compiled yet in this process."""
    monkeypatch.setattr(compiled, "_KERNELS", {})
    monkeypatch.setattr(compiled, "_FAILED", {})
    monkeypatch.setattr(compiled, "_TRUSTED", set())
    monkeypatch.setattr(compiled, "_EAGER_FAILED", {})
    monkeypatch.setattr(background, "_procs", {})
    monkeypatch.setattr(background, "_logs", {})
    monkeypatch.setattr(background, "_spent", {})
    yield monkeypatch
    background._stop_all()
    background.wait(60)


def test_a_short_run_never_compiles(fresh: pytest.MonkeyPatch) -> None:
    fresh.setenv("DESCENTLAB_COMPILE_AFTER", "20")
    model, twin = _net(), _net()
    opt = dt.AdamW(model.parameters(), lr=1e-2)
    ref = torch.optim.AdamW(twin.parameters(), lr=1e-2)
    gen, gen2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    before = compiled.compiles
    for _ in range(10):
        _one_step(model, opt, gen)
        _one_step(twin, ref, gen2)
    assert opt.engine_counts["eager"] == 10 * 20 and opt.engine_counts["compiled"] == 0
    assert not background._procs and compiled.compiles == before
    _same(model, twin, opt, ref)


def test_auto_compiles_in_the_background_and_switches_between_two_steps(
    fresh: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The switch happens; steps taken while another process compiles are eager ones, each
    within BOUND seconds; the kernel is then loaded between two steps; results never jump;
    a later process finds the kernel in the shared cache and only loads it."""
    bound = 2.0  # seconds for one training step while the compiler works (ms when idle)
    fresh.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "cache"))  # an empty cache
    fresh.setenv("DESCENTLAB_COMPILE_AFTER", "0")  # compile from the first step
    model, twin = _net(), _net()
    opt = dt.AdamW(model.parameters(), lr=1e-2)
    ref = torch.optim.AdamW(twin.parameters(), lr=1e-2)
    gen, gen2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    during: list[float] = []
    steps = 0
    deadline = time.perf_counter() + 600  # a compile that never lands fails the test
    load = 0.0  # the step that loads the kernel from the cache (seconds, once)
    while opt.engine_counts["compiled"] == 0 and time.perf_counter() < deadline:
        compiling = any(p.poll() is None for p in background._procs.values())
        loads = len(compiled._KERNELS)
        start = time.perf_counter()
        _one_step(model, opt, gen)
        took = time.perf_counter() - start
        if len(compiled._KERNELS) > loads:  # this step loaded the kernel: a stated stall
            load = took
        elif compiling:
            during.append(took)
        _one_step(twin, ref, gen2)
        steps += 1
        time.sleep(0.02)  # a loop's data loading: the low-priority compiler gets its turn
    assert len(background._procs) == 1, "one background compile (one dtype, one size class)"
    assert opt.engine_counts["compiled"] == 20  # the first compiled step, after the switch
    assert opt.engine_counts["eager"] == 20 * (steps - 1)  # every step before it
    assert during, "no step was taken while the compiler worked"
    assert max(during) < bound, f"a step waited {max(during):.2f} s for the compiler"
    assert load > 0, "no step loaded the kernel"  # seconds, once (README: the first steps)
    for _ in range(3):
        _one_step(model, opt, gen)
        _one_step(twin, ref, gen2)
    assert opt.engine_counts["compiled"] == 4 * 20
    print(
        f"{steps} eager steps; {len(during)} while compiling, the longest {max(during):.3f} s; "
        f"the load {load:.2f} s"
    )
    _same(model, twin, opt, ref, tol=1e-9)  # thousands of steps: round-off accumulates
    # The next process (or rank) of this machine: the marker says the cache holds it.
    (key,) = background._procs
    fresh.delenv("DESCENTLAB_COMPILE_AFTER")
    assert background.compile_after(key) == background.LOAD_AFTER


def test_a_wrong_compiled_kernel_is_never_trusted(fresh: pytest.MonkeyPatch) -> None:
    real_call = compiled.Kernel.__call__

    def wrong(self, ps, *args):  # type: ignore[no-untyped-def]
        out = real_call(self, ps, *args)
        torch._foreach_mul_(ps, 1.001)  # a planted miscompilation
        return out

    fresh.setattr(compiled.Kernel, "__call__", wrong)
    opt = _warned_once_and_same(
        lambda ps: dt.AdamW(ps, lr=1e-2, engine="compiled"),
        lambda ps: torch.optim.AdamW(ps, lr=1e-2),
        4,
        "differs from the reference",
    )
    assert opt.engine_counts["compiled"] == 0 and opt.engine_counts["eager"] == 4 * 20


def test_a_wrong_eager_lowering_is_never_trusted(fresh: pytest.MonkeyPatch) -> None:
    real = eager.program

    def planted(rule, names):  # type: ignore[no-untyped-def]
        prog = real(rule, names)

        def run(P, G, S, C):  # type: ignore[no-untyped-def]
            prog.run(P, G, S, C)
            torch._foreach_add_(S[0], 1e-3)  # a planted lowering bug in a slot

        return type("P", (), {"run": staticmethod(run)})()

    fresh.setattr(compiled, "program", planted)
    opt = _warned_once_and_same(
        lambda ps: dt.Adam(ps, lr=1e-2),
        lambda ps: torch.optim.Adam(ps, lr=1e-2),
        4,
        "differs from the reference",
    )
    assert opt.engine_counts["eager"] == 0 and opt.engine_counts["reference"] == 4 * 20


def test_torch_internals_it_does_not_recognise_leave_the_eager_engine(
    fresh: pytest.MonkeyPatch,
) -> None:
    def renamed(node):  # type: ignore[no-untyped-def]
        raise AttributeError("'GraphArg' object has no attribute 'source'")  # a future torch

    fresh.setattr(compiled, "_source_name", renamed)
    opt = _warned_once_and_same(
        lambda ps: dt.AdamW(ps, lr=1e-2, engine="compiled"),
        lambda ps: torch.optim.AdamW(ps, lr=1e-2),
        3,
        "unavailable.*eager engine runs",
    )
    assert opt.engine_counts["compiled"] == 0 and opt.engine_counts["eager"] == 3 * 20


_SCRIPT = textwrap.dedent(
    """
    import warnings, torch
    import descentlab.torch as dt
    warnings.simplefilter("always")
    torch.manual_seed(0)
    net = torch.nn.Sequential(*[torch.nn.Linear(8, 8) for _ in range(10)])
    opt = dt.AdamW(net.parameters(), lr=1e-2, engine="compiled")
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(4, 8)).pow(2).mean().backward()
        opt.step()
    print("COUNTS", opt.engine_counts["eager"], opt.engine_counts["compiled"])
    """
)


def _run_script(env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **env_extra}
    return subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, timeout=600
    )


def test_no_cpp_compiler_leaves_the_eager_engine_with_one_warning(tmp_path: Path) -> None:
    out = _run_script(
        {"CXX": str(tmp_path / "no-such-g++"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "c")}
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "COUNTS 60 0" in out.stdout
    assert out.stderr.count("descentlab: torch.compile is unavailable") == 1, out.stderr[-2000:]
    assert "eager engine runs the same rule" in out.stderr


def test_a_read_only_cache_directory_leaves_the_eager_engine(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    # root ignores permission bits; the immutable attribute binds root too
    locked = subprocess.run(["chattr", "+i", str(cache)], capture_output=True).returncode == 0
    if not locked:
        cache.chmod(0o555)
        if os.access(cache, os.W_OK):
            pytest.skip("cannot make a read-only directory here (root without chattr)")
    try:
        out = _run_script({"TORCHINDUCTOR_CACHE_DIR": str(cache)})
    finally:
        if locked:
            subprocess.run(["chattr", "-i", str(cache)], check=True)
        cache.chmod(0o755)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "COUNTS 60 0" in out.stdout
    assert out.stderr.count("descentlab: torch.compile is unavailable") == 1, out.stderr[-2000:]
    assert "eager engine runs the same rule" in out.stderr


def test_the_environment_forces_either_path(fresh: pytest.MonkeyPatch) -> None:
    for forced, path in (("eager", "eager"), ("reference", "reference")):
        fresh.setenv("DESCENTLAB_ENGINE", forced)
        model = _net()
        opt = dt.AdamW(model.parameters(), lr=1e-2)
        _one_step(model, opt, torch.Generator().manual_seed(1))
        assert opt.engine_counts[path] == 20
    fresh.setenv("DESCENTLAB_ENGINE", "fast")
    with pytest.raises(ValueError, match="DESCENTLAB_ENGINE='fast' is not an engine"):
        _one_step(_net(), dt.AdamW(_net().parameters()), torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fresh.setenv("DESCENTLAB_ENGINE", "compiled")
        model = _net()
        opt = dt.AdamW(model.parameters(), lr=1e-2)
        _one_step(model, opt, torch.Generator().manual_seed(1))
        assert opt.engine_counts["compiled"] == 20
