"""The default engine never waits for the compiler (issue: no compile tax).

``engine="auto"`` steps with the eager engine from the first step, compiles in a background
process once the run has spent ``DESCENTLAB_COMPILE_AFTER`` seconds on eager steps, loads
the kernel file that process leaves in a background thread, and switches between two steps;
every way compiling or loading can fail leaves the eager engine running with one warning;
every new kernel is checked against the reference before it is trusted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
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
    monkeypatch.setattr(background, "_loads", {})
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


BOUND = 1.0
"""Seconds one training step may take while another process compiles or a thread loads
(milliseconds when idle; the issue's bound for any step of a short script)."""

_LATER = textwrap.dedent(
    """
    import sys, time, torch
    import descentlab.torch as dt
    from descentlab.engines import background

    def net():
        torch.manual_seed(0)
        mods = []
        for _ in range(9):
            mods += [torch.nn.Linear(6, 6), torch.nn.Tanh()]
        return torch.nn.Sequential(*mods, torch.nn.Linear(6, 2)).double()

    model, twin = net(), net()
    opt = dt.AdamW(model.parameters(), lr=1e-2)
    ref = torch.optim.AdamW(twin.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    longest, steps = 0.0, 0
    while opt.engine_counts["compiled"] < 3 * 20 and steps < 100000:
        x = torch.randn(16, 6, generator=gen, dtype=torch.float64)
        y = torch.randn(16, 2, generator=gen, dtype=torch.float64)
        for m, o in ((model, opt), (twin, ref)):
            o.zero_grad()
            (m(x) - y).pow(2).mean().backward()
            start = time.perf_counter()
            o.step()
            if o is opt:
                longest = max(longest, time.perf_counter() - start)
        steps += 1
        time.sleep(0.005)
        if sys.argv[1] == "exit" and background._loads:
            print("EXIT WHILE LOADING", flush=True)
            raise SystemExit(0)  # the interpreter ends with the load thread still at work
    err = max(float((p - q).abs().max() / q.abs().max()) for p, q in
              zip(model.parameters(), twin.parameters()))
    print("LATER", len(background._procs), background.loads_started, longest, err)
    """
)


def _later(cache: Path, mode: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache), "DESCENTLAB_COMPILE_AFTER": "0"}
    return subprocess.run(
        [sys.executable, "-c", _LATER, mode], capture_output=True, text=True, env=env, timeout=600
    )


def test_auto_compiles_in_the_background_and_switches_between_two_steps(
    fresh: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The switch happens; steps taken while another process compiles, and while a thread
    of this one loads the kernel file it left, are eager ones, each within BOUND seconds;
    the loading thread never traces (torch.optim, stepped in this thread meanwhile, never
    sees torch compiling); the kernel is taken between two steps; results never jump; a
    later process finds the kernel file and only loads it, and may end while it loads."""
    cache = tmp_path / "cache"
    fresh.setenv("TORCHINDUCTOR_CACHE_DIR", str(cache))  # an empty cache
    fresh.setenv("DESCENTLAB_COMPILE_AFTER", "0")  # compile from the first step
    execute = background._execute

    def late(saved, path):  # type: ignore[no-untyped-def]
        time.sleep(0.5)  # steps are taken while the thread works, even where torch's
        return execute(saved, path)  # compiler modules were imported by earlier tests

    fresh.setattr(background, "_execute", late)
    model, twin = _net(), _net()
    opt = dt.AdamW(model.parameters(), lr=1e-2)
    ref = torch.optim.AdamW(twin.parameters(), lr=1e-2)
    gen, gen2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    compiling: list[float] = []
    loading: list[float] = []
    steps = 0
    loads = background.loads_started
    deadline = time.perf_counter() + 600  # a compile that never lands fails the test
    take = 0.0  # the step that took the loaded kernel
    while opt.engine_counts["compiled"] == 0 and time.perf_counter() < deadline:
        busy = any(p.poll() is None for p in background._procs.values())
        thread = any(t.is_alive() for t, _ in background._loads.values())
        assert not torch.compiler.is_compiling(), "the loading thread traced"
        start = time.perf_counter()
        _one_step(model, opt, gen)
        took = time.perf_counter() - start
        if opt.engine_counts["compiled"]:
            take = took
        elif busy:
            compiling.append(took)
        elif thread:
            loading.append(took)
        _one_step(twin, ref, gen2)  # torch.optim, in this thread, while the other loads
        steps += 1
        time.sleep(0.02)  # a loop's data loading: the low-priority compiler gets its turn
    assert len(background._procs) == 1, "one background compile (one dtype, one size class)"
    assert background.loads_started == loads + 1, "the kernel file was loaded in a thread"
    assert opt.engine_counts["compiled"] == 20  # the first compiled step, after the switch
    assert opt.engine_counts["eager"] == 20 * (steps - 1)  # every step before it
    assert compiling, "no step was taken while the compiler worked"
    assert loading, "no step was taken while the kernel file loaded"
    slowest = max(compiling + loading + [take])
    assert slowest < BOUND, f"a step took {slowest:.2f} s while compiling or loading"
    for _ in range(3):
        _one_step(model, opt, gen)
        _one_step(twin, ref, gen2)
    assert opt.engine_counts["compiled"] == 4 * 20
    print(
        f"{steps} eager steps; {len(compiling)} while compiling, the longest "
        f"{max(compiling):.3f} s; {len(loading)} while loading, the longest "
        f"{max(loading):.3f} s; the switch {take:.3f} s"
    )
    _same(model, twin, opt, ref, tol=1e-9)  # thousands of steps: round-off accumulates
    # The next process (or rank) of this machine: the kernel file says the cache holds it.
    (key,) = background._procs
    fresh.delenv("DESCENTLAB_COMPILE_AFTER")
    assert background.compile_after(key) == background.LOAD_AFTER
    later = _later(cache, "run")
    assert later.returncode == 0, later.stderr[-2000:]
    (line,) = [x for x in later.stdout.splitlines() if x.startswith("LATER")]
    procs, loaded, longest, err = line.split()[1:]
    assert (procs, loaded) == ("0", "1"), "it compiled again instead of loading"
    assert float(longest) < BOUND and float(err) < 1e-12, line
    ended = _later(cache, "exit")  # the interpreter ends while the thread loads: no crash
    assert ended.returncode == 0 and "EXIT WHILE LOADING" in ended.stdout, ended.stderr[-2000:]


def _finished_compile(saved: dict[str, object] | None):  # type: ignore[no-untyped-def]
    """A stand-in for the compiling process: it exits at once, leaving ``saved`` as the
    kernel file (None: none)."""

    def start(key) -> None:  # type: ignore[no-untyped-def]
        if saved is not None:
            background.save(key, saved["sources"], saved["code"])  # type: ignore[arg-type]
        folder = Path(tempfile.mkdtemp(prefix="descentlab-test-"))
        (folder / "log.txt").write_text("")
        background._logs[key] = folder
        background._procs[key] = subprocess.Popen([sys.executable, "-c", "pass"])

    return start


def _until_settled(opt, model, twin, ref, steps: int = 4000) -> None:  # type: ignore[no-untyped-def]
    gen, gen2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    for _ in range(steps):
        _one_step(model, opt, gen)
        _one_step(twin, ref, gen2)
        if compiled._FAILED:
            break
        time.sleep(0.002)


def test_a_kernel_file_that_fails_to_load_leaves_the_eager_engine_with_one_warning(
    fresh: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fresh.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "cache"))
    fresh.setenv("DESCENTLAB_COMPILE_AFTER", "0")
    planted = {"sources": ["L['cmat']"], "code": "raise RuntimeError('a planted load failure')"}
    fresh.setattr(background, "_start", _finished_compile(planted))
    model, twin = _net(), _net()
    opt = dt.AdamW(model.parameters(), lr=1e-2)
    ref = torch.optim.AdamW(twin.parameters(), lr=1e-2)
    loads = background.loads_started
    with pytest.warns(RuntimeWarning, match="planted load failure.*eager engine goes on") as record:
        _until_settled(opt, model, twin, ref)
    assert len(record) == 1 and background.loads_started == loads + 1
    assert opt.engine_counts["compiled"] == 0 and opt.engine_counts["reference"] == 0
    _same(model, twin, opt, ref)


def test_a_stale_kernel_file_is_compiled_afresh(fresh: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A kernel file another torch made (or one that no longer loads) is not trusted: it is
    removed and the kernel compiled again in the background; the eager engine meanwhile."""
    fresh.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "cache"))
    fresh.setenv("DESCENTLAB_COMPILE_AFTER", "0")
    started: list[object] = []

    def start(key) -> None:  # type: ignore[no-untyped-def]
        started.append(key)
        background._procs[key] = None  # type: ignore[assignment]  # never finishes

    fresh.setattr(background, "_start", start)
    model, twin = _net(), _net()
    opt = dt.AdamW(model.parameters(), lr=1e-2)
    ref = torch.optim.AdamW(twin.parameters(), lr=1e-2)
    gen, gen2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    _one_step(model, opt, gen)  # the first eager step reaches the threshold: a compile
    _one_step(twin, ref, gen2)
    (key,) = started
    background._procs.clear()
    background.save(key, ["L['cmat']"], "def call(args):\n    raise RuntimeError('stale')\n")
    marker = background._marker(key)
    stale = marker.read_text().replace(torch.__version__, "0.0.0")
    marker.write_text(stale)
    started.clear()
    loads = background.loads_started
    for _ in range(200):
        _one_step(model, opt, gen)
        _one_step(twin, ref, gen2)
        if started:
            break
        time.sleep(0.005)
    assert background.loads_started == loads + 1 and started == [key]
    assert not marker.exists(), "the stale kernel file was kept"
    assert opt.engine_counts["compiled"] == 0
    _same(model, twin, opt, ref)


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


@pytest.mark.parametrize("form", ["run", "run_one"])
def test_a_wrong_eager_lowering_is_never_trusted(fresh: pytest.MonkeyPatch, form: str) -> None:
    """A planted bug in either form of the lowering (over lists, over one tensor) is caught
    by the first call's check, before any parameter is stepped with it."""
    real = eager.program

    def planted(rule, names):  # type: ignore[no-untyped-def]
        prog = real(rule, names)

        def run(P, G, S, C):  # type: ignore[no-untyped-def]
            prog.run(P, G, S, C)
            if form == "run":
                torch._foreach_add_(S[0], 1e-3)  # a planted lowering bug in a slot

        def run_one(P, G, S, C):  # type: ignore[no-untyped-def]
            prog.run_one(P, G, S, C)
            if form == "run_one":
                S[0].add_(1e-3)

        return type("P", (), {"run": staticmethod(run), "run_one": staticmethod(run_one)})()

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
