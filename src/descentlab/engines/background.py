"""When the default engine compiles: in another process, once the run has shown it pays.

``engine="auto"`` steps every group with the eager engine (:mod:`descentlab.engines.eager`)
from the first step. Compiling a rule costs seconds to a minute of CPU (tens of seconds with
an empty compiler cache on 2 cores), and a compiled kernel saves a few milliseconds per
step: a short script never earns that back. So ``auto`` rents before it buys (the
ski-rental rule): it counts the time the eager engine spends on each kernel's tensors, and
only once that time reaches :func:`compile_after` seconds (about what one cold compile
costs, measured) does it start compiling, in a separate Python process (at the lowest
priority: it runs on CPU time the training process leaves) that
fills torch's compiler cache (``TORCHINDUCTOR_CACHE_DIR``, shared by every process of the
machine: torchrun ranks, lab workers, the next run) while the eager engine goes on
stepping. If compiling fails, the eager engine goes on, after one warning. A run pays at
most about twice what the best choice in hindsight would have paid. On a machine the
training keeps busy (a CPU training loop: its threads spin between operations) the
compiler may get no core at all, and the eager engine runs to the end (measured: a
74-tensor GPT-like AdamW training loop on 2 cores, no compile finished in 150 s, no step
over 0.05 s; with the CPU idle 10 ms per step it finished and switched 58 s in).

**Loading without a stall.** That process also leaves a *kernel file* beside the compiler
cache: the Python module inductor generated for the kernel (it loads the compiled C++ from
the cache) and the names of its inputs. The training process executes that module in a
background thread, which imports torch's compiler modules and loads the shared library but
never traces (tracing would set torch's process-wide ``is_compiling()`` flag, which changes
what torch.optim and other code in the training thread do); the kernel is switched to
between two steps, and its first call is checked against the reference engine before it is
trusted. Loading it in the training thread instead held one step for 3.6-6.7 s (74-tensor
AdamW, 2 cores). Where no kernel file can be made (a non-CPU device, or a torch whose
generated modules are not where this module looks) the kernel is loaded from the compiler
cache in the training thread, as before.

``DESCENTLAB_COMPILE_AFTER`` (seconds) changes the threshold: ``0`` starts compiling at the
first step, a negative value never compiles. A kernel that an earlier process of this
machine compiled (its kernel file says so) is only loaded: its threshold is
:data:`LOAD_AFTER`. ``engine="compiled"`` compiles at the first step and waits for it, as
before; ``engine="eager"`` never compiles.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import gc
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

__all__ = [
    "COMPILE_AFTER",
    "LOAD_AFTER",
    "Loaded",
    "brief",
    "compile_after",
    "finished",
    "record",
    "spent",
    "wait",
]

COMPILE_AFTER = 20.0
"""Seconds of eager stepping after which ``auto`` starts compiling a kernel (see above)."""
LOAD_AFTER = 2.0
"""The same, for a kernel this machine's compiler cache already holds (only loaded)."""

FORMAT = 1  # of the kernel file; a file of another format is compiled again

_spent: dict[Any, float] = {}
_procs: dict[Any, subprocess.Popen[bytes]] = {}
_logs: dict[Any, Path] = {}
_loads: dict[Any, tuple[threading.Thread, dict[str, Any]]] = {}
_load_lock = threading.Lock()  # one module executed at a time
loads_started = 0  # kernel files this process began to load in a thread (tests read it)


class Loaded(NamedTuple):
    """A kernel executed from its kernel file: the generated module's ``call`` (it takes
    the list of graph inputs) and the inputs' names (``L['ps'][3]``...), in its order."""

    call: Callable[[list[Any]], Any]
    sources: list[str]


def compile_after(key: Any = None) -> float:
    """The threshold in force for ``key``: ``DESCENTLAB_COMPILE_AFTER`` if set, else
    :data:`LOAD_AFTER` for a kernel already in the compiler cache, :data:`COMPILE_AFTER`."""
    forced = _forced()
    if forced is not None:
        return forced
    return LOAD_AFTER if key is not None and _marker(key).exists() else COMPILE_AFTER


def _forced() -> float | None:
    """``DESCENTLAB_COMPILE_AFTER`` as a number of seconds, None where it is not set."""
    value = os.environ.get("DESCENTLAB_COMPILE_AFTER")
    if value is None or not value.strip():
        return None
    try:
        return float(value)
    except ValueError:
        raise ValueError(
            f"DESCENTLAB_COMPILE_AFTER must be a number of seconds, got {value!r}"
        ) from None


def _cache_dir() -> Path:
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    return Path(cache_dir())


@functools.cache
def _code_digest() -> str:
    """A digest of the sources a kernel is generated from (the rules, the chunk function,
    the policy): a kernel file made by other code is never picked up."""
    here = Path(__file__).resolve().parent
    files = sorted((here.parent / "rules").glob("*.py"))
    files += [here / "compiled.py", here / "reference.py", here / "policy.py"]
    digest = hashlib.sha256()
    for path in files:
        with contextlib.suppress(OSError):
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def _marker(key: Any) -> Path:
    """The kernel file of ``key``: beside the compiler cache, named by the key, the torch
    version and the code it is generated from."""
    import torch

    text = repr((key, torch.__version__, FORMAT, _code_digest()))
    digest = hashlib.sha256(text.encode()).hexdigest()[:24]
    return _cache_dir() / "descentlab" / f"{digest}.json"


def brief(exc: BaseException, limit: int = 200) -> str:
    """An exception as one short line for a warning (torch's compiler errors span many)."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def spent(key: Any, seconds: float) -> str | None:
    """Count ``seconds`` of eager stepping for ``key``; start compiling it (or loading its
    kernel file) once they pay. Returns why that could not start (the caller warns)."""
    total = _spent[key] = _spent.get(key, 0.0) + seconds
    if key in _procs or key in _loads:
        return None
    # Called after every eager step: below the lowest default threshold nothing is looked
    # up (finding the kernel file cost 0.1 ms a call, 4% of a 74-tensor SGD step).
    forced = _forced()
    if forced is None and total < min(LOAD_AFTER, COMPILE_AFTER):
        return None
    threshold = compile_after(key) if forced is None else forced
    if threshold < 0 or total < threshold:
        return None
    saved = _read(key)
    if saved is not None and saved.get("code") is not None:
        _start_load(key, saved)
        return None
    try:
        _start(key)
    except Exception as exc:  # no writable temp dir, no fork...: the eager engine goes on
        _procs[key] = None  # type: ignore[assignment]  # never tried again
        return brief(exc)
    return None


def _stop_all() -> None:
    """At exit: a compile still running is stopped (no process outlives the user's script)."""
    for proc in _procs.values():
        if proc is not None and proc.poll() is None:
            proc.terminate()
    for folder in _logs.values():
        shutil.rmtree(folder, ignore_errors=True)


atexit.register(_stop_all)


# The compiling process runs only on CPU time the training process leaves (Linux's
# SCHED_IDLE, inherited by the C++ compiler; elsewhere a low priority), set before anything
# is imported: at the normal priority, a process that takes a core the training step's
# threads wait for held single steps for 0.9-1.2 s (measured: 74-tensor AdamW, 2 cores,
# two busy processes beside it), at SCHED_IDLE for at most 0.04 s.
_BOOT = """import os, sys
try:
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
except (AttributeError, OSError):
    if hasattr(os, "nice"):
        os.nice(10)
from descentlab.engines.warm import main
raise SystemExit(main(sys.argv[1:]))
"""


def _start(key: Any) -> None:
    folder = Path(tempfile.mkdtemp(prefix="descentlab-compile-"))
    (folder / "key.pickle").write_bytes(pickle.dumps(key))
    _logs[key] = folder
    with open(folder / "log.txt", "wb") as log:
        _procs[key] = subprocess.Popen(
            [sys.executable, "-c", _BOOT, str(folder / "key.pickle")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # one compiler worker: the training process keeps the cores
            env={
                **os.environ,
                "DESCENTLAB_COMPILE_AFTER": "-1",
                "TORCHINDUCTOR_COMPILE_THREADS": "1",
            },
        )


def finished(key: Any) -> tuple[bool, str, Loaded | None] | None:
    """Where the background work on ``key`` stands, reported once it is over:

    * ``(True, "", loaded)``: its kernel file was executed in a thread; ``loaded`` runs it;
    * ``(True, "", None)``: the compiler cache holds it, but there is no kernel file: the
      caller loads it from the cache itself (in the training thread);
    * ``(False, why, None)``: compiling or loading failed;
    * None while a process compiles or a thread loads (or if nothing was started).
    """
    if key in _loads:
        thread, box = _loads[key]
        if thread.is_alive():
            return None
        del _loads[key]
        if "loaded" in box:
            return True, "", box["loaded"]
        if key not in _procs:  # a kernel file of an earlier process: compile it afresh
            with contextlib.suppress(OSError):
                _marker(key).unlink()
            try:
                _start(key)
            except Exception as exc:
                return False, brief(exc), None
            return None
        return False, f"loading the compiled kernel failed: {box.get('error')}", None
    proc = _procs.get(key)
    if proc is None or proc.poll() is None:
        return None
    if key not in _logs:
        return None
    folder = _logs.pop(key)
    text = (folder / "log.txt").read_text(errors="replace")
    shutil.rmtree(folder, ignore_errors=True)
    if proc.returncode != 0:
        lines = [line for line in text.splitlines() if line.strip()]
        return False, (lines[-1] if lines else f"exit code {proc.returncode}"), None
    saved = _read(key)
    if saved is not None and saved.get("code") is not None:
        _start_load(key, saved)
        return None
    return True, "", None


def save(key: Any, sources: list[str] | None, code: str | None) -> None:
    """Write the kernel file of ``key`` (the compiling process calls this): the generated
    module's text and its inputs' names, or no code where there is none to load."""
    import torch

    isa = None
    if code is not None and key.device.type == "cpu":
        from torch._inductor.cpu_vec_isa import pick_vec_isa

        isa = str(pick_vec_isa())
    saved = {
        "format": FORMAT,
        "torch": torch.__version__,
        "isa": isa,
        "sources": sources,
        "code": code,
    }
    with contextlib.suppress(OSError):  # a read-only cache: later processes compile again
        marker = _marker(key)
        marker.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=marker.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(saved, f)
            os.replace(tmp, marker)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def record(key: Any) -> None:
    """Note beside the compiler cache that it holds ``key`` (later processes load sooner),
    where no kernel file says so already."""
    with contextlib.suppress(OSError):
        if not _marker(key).exists():
            save(key, None, None)


def _read(key: Any) -> dict[str, Any] | None:
    """The kernel file of ``key``, or None (none, unreadable, or of another format)."""
    try:
        saved = json.loads(_marker(key).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        return None
    return saved


def _start_load(key: Any, saved: dict[str, Any]) -> None:
    """Execute the kernel file's module in a daemon thread (see the module's docstring)."""
    global loads_started
    box: dict[str, Any] = {}
    path = str(_marker(key))

    def work() -> None:
        try:
            with _load_lock, _out_of_the_way():
                box["loaded"] = _execute(saved, path)
        except BaseException as exc:  # reported by finished(), then the eager engine goes on
            box["error"] = brief(exc)

    thread = threading.Thread(target=work, name="descentlab-kernel-load", daemon=True)
    _loads[key] = (thread, box)
    loads_started += 1
    thread.start()


SWITCH_INTERVAL = 1e-4
"""Seconds between the interpreter's thread switches while a kernel file loads.

Every torch operation of the training thread releases the GIL, and takes it back only once
the loading thread has run for the switch interval (5 ms by default): a 74-tensor AdamW
step of a few hundred operations then took 1.6 s (2 cores). Loads are rare and take
seconds, so the interval is shortened for them alone."""


@contextlib.contextmanager
def _out_of_the_way() -> Any:
    """While a kernel file loads in this thread: short thread switches (above), this thread
    at the lowest priority (Linux: a thread's own nice value), so the training step's
    threads keep their cores, and no cyclic garbage collection, each of which holds every
    thread for 0.05-0.2 s in a process that has imported torch (the load's imports would
    trigger several). Each is put back afterwards, unless someone changed it meanwhile."""
    before = sys.getswitchinterval()
    ours = min(before, SWITCH_INTERVAL)
    sys.setswitchinterval(ours)
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
        if sys.getswitchinterval() == ours:
            sys.setswitchinterval(before)


def _execute(saved: dict[str, Any], path: str) -> Loaded:
    """Run a kernel file's module (imports, then the compiled C++ loaded from the cache, or
    built there if it is gone) and return its entry point. Never traces."""
    import torch

    if saved.get("torch") != torch.__version__:
        raise RuntimeError(f"made by torch {saved.get('torch')}, this is {torch.__version__}")
    sources = saved.get("sources")
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        raise RuntimeError("the kernel file names no inputs")
    if saved.get("isa") is not None:
        from torch._inductor.cpu_vec_isa import pick_vec_isa

        here = str(pick_vec_isa())
        if here != saved["isa"]:
            raise RuntimeError(f"compiled for {saved['isa']} vectors, this CPU has {here}")
    module = types.ModuleType("descentlab_kernel")
    module.__file__ = path
    exec(compile(saved["code"], path, "exec"), module.__dict__)
    call = getattr(module, "call", None)
    if not callable(call):
        raise RuntimeError("the kernel file's module has no call()")
    return Loaded(call, sources)


def wait(timeout: float | None = None) -> bool:
    """Wait for every background compile and load started so far; True if all finished."""
    procs = [p for p in _procs.values() if p is not None]
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    threads = [thread for thread, _ in _loads.values()]
    for thread in threads:
        thread.join(timeout)
    return all(p.poll() is not None for p in procs) and not any(t.is_alive() for t in threads)
