"""Step-time and memory benchmark: descentlab against torch.optim, side by side in one run.

**Step time** is measured on the loop users write::

    loss.backward()        # autograd hands every parameter a NEW gradient tensor
    opt.step()
    opt.zero_grad()        # set_to_none=True, torch's default

Before each timed step every parameter gets a fresh gradient tensor (a clone of a fixed
gradient, as autograd makes a new tensor each backward; the cloning is not timed), then
``step()`` + ``zero_grad()`` are timed. Every variant of a case is timed round-robin (one
step each, the starting variant rotating, repeated), so machine load hits them alike. The
first step of each variant (where descentlab's compiled engines compile) is timed apart
and reported; a few warm-up steps follow before the timed ones. Results are medians, ratios
to torch (``fused`` where torch has a fused CPU path, else its fastest) and effective GB/s
against the streaming bandwidth measured in the same run (an in-place ``a += s * b``).

**Peak memory** (``ru_maxrss``) is measured in a fresh process per variant and model size:
a stack of ``nn.Linear`` layers trained a few steps with AdamW on ``model(x).sum()``, so the
gradients come from autograd. Two sizes give the slope (MiB per million parameters) and the
fixed cost (intercept: the interpreter, torch, and whatever the optimizer imports).
"""

from __future__ import annotations

import gc
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import torch as dt

# bytes moved per fp32 parameter: reads (p, g, state...) + writes (p, state...)
BYTES = {"adam": 28, "adamw": 28, "sgd:momentum=0.9": 20, "rmsprop": 20}
TORCH = {
    "adam": (torch.optim.Adam, dt.Adam, {"lr": 1e-3}),
    "adamw": (torch.optim.AdamW, dt.AdamW, {"lr": 1e-3}),
    "sgd:momentum=0.9": (torch.optim.SGD, dt.SGD, {"lr": 1e-3, "momentum": 0.9}),
    "rmsprop": (torch.optim.RMSprop, dt.RMSprop, {"lr": 1e-3}),
}
FUSED = {"adam", "adamw", "sgd:momentum=0.9"}
# Names are the lab's optimizer specs (``descentlab compare --optimizers``); older names
# are still accepted.
ALIASES = {"sgd-momentum": "sgd:momentum=0.9"}  # torch has no fused CPU RMSprop
TORCH_VARIANTS: dict[str, dict[str, Any]] = {
    "torch for-loop": {"foreach": False},
    "torch foreach": {"foreach": True},
    "torch fused": {"fused": True},
}
OURS_VARIANTS: dict[str, dict[str, Any]] = {
    "descentlab auto": {},
    "descentlab flat": {"engine": "flat"},
}
# The flat engine's own loop: zero_grad(set_to_none=False) keeps every .grad a view of the
# flat gradient buffer, so backward accumulates straight into it (no gather copy).
FLAT_KEEP = "descentlab flat, grads kept"
VARIANTS = (*TORCH_VARIANTS, *OURS_VARIANTS, FLAT_KEEP)

BIG = 20_000_000  # elements of the single-tensor layout at scale 1
SMALL_TENSORS = 5000  # 1k-element tensors of the many-small layout at scale 1
GPT_LAYERS = 12  # blocks of the transformer-like layout at scale 1
MEMORY_SIZES = (20_000_000, 60_000_000)  # parameters of the memory models at scale 1
MEMORY_WIDTH = 1024  # width of their Linear layers at scale 1
MEMORY_VARIANTS = ("torch fused", "descentlab auto", "descentlab flat")


# --------------------------------------------------------------------------------- layouts


def human(n: float) -> str:
    """``20_000_000 -> '20M'``, ``2_500 -> '2.5k'``."""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:g}"


@dataclass(frozen=True)
class Layout:
    """Parameter shapes of one benchmark case; ``label`` names its actual size."""

    key: str
    label: str
    shapes: list[tuple[int, ...]]

    @property
    def numel(self) -> int:
        return sum(math.prod(s) for s in self.shapes)

    @property
    def tensors(self) -> int:
        return len(self.shapes)


# Names accepted by ``--layouts``: the keys, and the labels at scale 1.
LAYOUT_ALIASES = {
    "big": "big",
    "1 x 20m": "big",
    "many-small": "many-small",
    "5000 x 1k": "many-small",
    "gpt": "gpt",
    "gpt-like": "gpt",
    "transformer mix": "gpt",
}
LAYOUT_NAMES = ["big", "many-small", "gpt", "1 x 20M", "5000 x 1k", "transformer mix"]


def layout_key(name: str) -> str:
    """The layout key for a name given on the command line (KeyError if unknown)."""
    return LAYOUT_ALIASES[name.strip().lower()]


def layouts(scale: float = 1.0) -> dict[str, Layout]:
    """The layouts by key; ``scale`` shrinks every layout for quick runs."""
    big = max(1, int(BIG * scale))
    small = max(1, int(SMALL_TENSORS * scale))
    d, layers, vocab = 256, max(1, int(GPT_LAYERS * scale)), 5000
    mix: list[tuple[int, ...]] = [(vocab, d), (1024, d)]
    block: list[tuple[int, ...]] = [
        (d,),
        (d,),
        (3 * d, d),
        (3 * d,),
        (d, d),
        (d,),
        (d,),
        (d,),
        (4 * d, d),
        (4 * d,),
        (d, 4 * d),
        (d,),
    ]
    mix += block * layers + [(d,), (d,)]
    numel = sum(math.prod(s) for s in mix)
    return {
        "big": Layout("big", f"1 x {human(big)}", [(big,)]),
        "many-small": Layout("many-small", f"{small} x 1k", [(1000,)] * small),
        "gpt": Layout("gpt", f"GPT-like {layers}L d{d} ({human(numel)})", mix),
    }


# ------------------------------------------------------------------------------ step time


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def stream_bandwidth(n: int = 50_000_000, reps: int = 10, device: str = "cpu") -> float:
    """GB/s of an in-place ``a += s * b`` (3 x 4 bytes per element), the step's ceiling."""
    a, b = torch.randn(n, device=device), torch.randn(n, device=device)
    a.add_(b, alpha=1e-6)
    times = []
    for _ in range(reps):
        _sync(device)
        t = time.perf_counter()
        a.add_(b, alpha=1e-6)
        _sync(device)
        times.append(time.perf_counter() - t)
    return 12 * n / min(times) / 1e9


def _params(shapes: list[tuple[int, ...]], device: str) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(s, generator=gen).to(device)) for s in shapes]


def _grads(shapes: list[tuple[int, ...]], device: str) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(s, generator=gen) * 1e-2).to(device) for s in shapes]


@dataclass
class _Variant:
    label: str
    opt: torch.optim.Optimizer
    params: list[torch.nn.Parameter]
    keep_grads: bool = False

    def step(self, grads: list[torch.Tensor], device: str) -> float:
        """Seconds of ``step()`` + ``zero_grad()`` after a backward's worth of gradients.

        NEW gradient tensors, as autograd makes each backward after ``zero_grad()``; with
        ``keep_grads`` (``zero_grad(set_to_none=False)``), written into the existing ones,
        as backward accumulates into them. Neither is timed.
        """
        for p, g in zip(self.params, grads, strict=True):
            if self.keep_grads and p.grad is not None:
                p.grad.copy_(g)
            else:
                p.grad = g.clone()
        _sync(device)
        t = time.perf_counter()
        self.opt.step()
        self.opt.zero_grad(set_to_none=not self.keep_grads)
        _sync(device)
        return time.perf_counter() - t


def _variants(name: str, shapes: list[tuple[int, ...]], device: str) -> list[_Variant]:
    theirs, ours, hp = TORCH[name]
    out = []
    for label, kw in TORCH_VARIANTS.items():
        if "fused" in kw and name not in FUSED:
            continue
        params = _params(shapes, device)
        out.append(_Variant(label, theirs(params, **hp, **kw), params))
    for label, kw in OURS_VARIANTS.items():
        params = _params(shapes, device)
        out.append(_Variant(label, ours(params, **hp, **kw), params))
    params = _params(shapes, device)
    out.append(_Variant(FLAT_KEEP, ours(params, **hp, engine="flat"), params, keep_grads=True))
    return out


def _time_case(
    name: str, layout: Layout, device: str, reps: int, warmup: int
) -> list[dict[str, Any]]:
    """Rows for one (optimizer, layout): every variant timed round-robin."""
    grads = _grads(layout.shapes, device)
    variants = _variants(name, layout.shapes, device)
    caught: dict[str, list[str]] = {v.label: [] for v in variants}
    first: dict[str, float] = {}
    times: dict[str, list[float]] = {v.label: [] for v in variants}
    gc.collect()
    with warnings.catch_warnings(record=True) as log:
        warnings.simplefilter("always")

        def step(v: _Variant) -> float:
            seconds = v.step(grads, device)
            for w in log:
                if str(w.message) not in caught[v.label]:
                    caught[v.label].append(str(w.message))
            log.clear()
            return seconds

        for v in variants:  # first step: compiling, state allocation
            first[v.label] = step(v)
        for _ in range(warmup):
            for v in variants:
                step(v)
        for r in range(reps):
            k = r % len(variants)  # rotate who goes first
            for v in variants[k:] + variants[:k]:
                times[v.label].append(step(v))
    med = {k: statistics.median(t) for k, t in times.items()}
    best_torch = min(t for k, t in med.items() if k.startswith("torch"))
    baseline = (
        "torch fused"
        if "torch fused" in med
        else min((k for k in med if k.startswith("torch")), key=med.__getitem__)
    )
    rows = []
    for v in variants:
        t = med[v.label]
        row: dict[str, Any] = {
            "layout": layout.label,
            "layout_key": layout.key,
            "optimizer": name,
            "variant": v.label,
            "tensors": layout.tensors,
            "numel": layout.numel,
            "ms": t * 1e3,
            "ms_min": min(times[v.label]) * 1e3,
            "ms_max": max(times[v.label]) * 1e3,
            "first_step_ms": first[v.label] * 1e3,
            "steps_per_s": 1 / t,
            "gb_per_s": BYTES[name] * layout.numel / t / 1e9,
            "baseline": baseline,
            "ratio": med[baseline] / t,  # > 1: faster than torch's baseline
            "vs_torch_fastest": best_torch / t,
            "vs_torch_fused": med["torch fused"] / t if "torch fused" in med else None,
        }
        counts = getattr(v.opt, "engine_counts", None)
        if counts is not None:
            steps = 1 + warmup + reps
            row["engine_updates_per_step"] = {
                k: c / steps for k, c in counts.items() if c
            }  # parameters stepped by each engine, per step
        if caught[v.label]:
            row["warnings"] = caught[v.label]
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------ telemetry

TELEMETRY_EVERY = 10


def _quartiles(values: list[float]) -> list[float]:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
    return [q[0], q[2]]


def telemetry_overhead(scale: float, blocks: int, device: str = "cpu") -> dict[str, Any]:
    """Step time with and without ``descentlab.telemetry(every=10)``, AdamW, GPT-like layout.

    Timed in blocks of ``every`` steps, so each block holds exactly one sampled step; the
    four variants take turns block by block (round-robin, who goes first rotating), and the
    overhead is the median block time with telemetry over the median without, per pair.
    torch.optim's AdamW is measured by a copy of the parameters around the sampled step;
    descentlab's by sums computed inside its own step (no copy).
    """
    from .monitoring import telemetry

    layout = layouts(scale)["gpt"]
    grads = _grads(layout.shapes, device)
    pairs = {
        "torch foreach": lambda ps: torch.optim.AdamW(ps, lr=1e-3, foreach=True),
        "descentlab default": lambda ps: dt.AdamW(ps, lr=1e-3),
    }
    variants: list[tuple[str, bool, _Variant, Any]] = []
    for label, make in pairs.items():
        for watched in (False, True):
            params = _params(layout.shapes, device)
            opt = make(params)
            handle = telemetry(opt, every=TELEMETRY_EVERY) if watched else None
            variants.append((label, watched, _Variant(label, opt, params), handle))
    times: dict[tuple[str, bool], list[float]] = {(v[0], v[1]): [] for v in variants}
    for _, _, v, _ in variants:  # warm-up: compiling (both kernels), allocating state
        for _ in range(TELEMETRY_EVERY + 1):
            v.step(grads, device)
    for _, _, v, h in variants:  # align: every block starts on a sampled step
        while h is not None and h.steps % TELEMETRY_EVERY:
            v.step(grads, device)
    for r in range(blocks):
        k = r % len(variants)
        for label, watched, v, _ in variants[k:] + variants[:k]:
            seconds = sum(v.step(grads, device) for _ in range(TELEMETRY_EVERY))
            times[(label, watched)].append(seconds / TELEMETRY_EVERY)
    rows = []
    for label in pairs:
        off, on = times[(label, False)], times[(label, True)]
        # blocks r of the two run back to back: their ratio cancels drift in machine speed
        ratios = [b / a for a, b in zip(off, on, strict=True)]
        rows.append(
            {"optimizer": label, "ms": statistics.median(off) * 1e3,
             "ms_with_telemetry": statistics.median(on) * 1e3,
             "overhead_pct": 100 * (statistics.median(ratios) - 1),
             "overhead_pct_quartiles": [100 * (q - 1) for q in _quartiles(ratios)]}
        )  # fmt: skip
    samples = [h.engine_samples for *_, h in variants if h is not None]
    return {
        "layout": layout.label,
        "every": TELEMETRY_EVERY,
        "blocks": blocks,
        "rows": rows,
        "engine_samples": samples,  # sampled steps measured inside descentlab's engine
    }


# --------------------------------------------------------------------------------- memory

# Run as ``python -c _MEMORY_CHILD SPEC_JSON``: the user's program and nothing else (the
# torch.optim variant does not import descentlab). Prints one JSON line.
_MEMORY_CHILD = r"""
import json, resource, sys, time
spec = json.loads(sys.argv[1])
import torch
if spec["variant"] != "torch fused":
    import descentlab.torch

def peak_mib():
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 2**20 if sys.platform == "darwin" else kib / 2**10  # bytes on macOS

def proc_mib(field):  # Linux: VmHWM (peak) and VmRSS (now) of this process image
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 2**10
    except OSError:
        return None

out_import = peak_mib()  # the interpreter, torch (and descentlab)
torch.manual_seed(0)
d = spec["width"]
model = torch.nn.Sequential(*[torch.nn.Linear(d, d) for _ in range(spec["layers"])])
x = torch.randn(spec["batch"], d)
out = {"numel": sum(p.numel() for p in model.parameters()),
       "tensors": len(list(model.parameters()))}
model(x).sum().backward()
model.zero_grad()
out["peak_import_mib"] = out_import
out["peak_model_mib"] = peak_mib()  # model + one backward's gradients, no optimizer
variant = spec["variant"]
if variant == "torch fused":
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
elif variant == "descentlab auto":
    opt = descentlab.torch.AdamW(model.parameters(), lr=1e-4)
else:
    opt = descentlab.torch.AdamW(model.parameters(), lr=1e-4, engine="flat")
times = []
for _ in range(spec["steps"]):
    t = time.perf_counter()
    model(x).sum().backward()
    opt.step()
    opt.zero_grad()
    times.append(time.perf_counter() - t)
out["peak_mib"] = peak_mib()
out["vmhwm_mib"] = proc_mib("VmHWM")  # cross-check of peak_mib
out["rss_end_mib"] = proc_mib("VmRSS")
out["first_step_s"] = times[0]
out["last_step_s"] = times[-1]
out["engine_counts"] = getattr(opt, "engine_counts", None)
print(json.dumps(out))
"""


def memory_models(scale: float = 1.0) -> list[dict[str, int]]:
    """The two model sizes of the memory measurement: Linear width and depth."""
    width = max(16, round(MEMORY_WIDTH * math.sqrt(scale)))
    per_layer = width * width + width
    small, large = (max(1, round(n * scale / per_layer)) for n in MEMORY_SIZES)
    return [{"width": width, "layers": small}, {"width": width, "layers": max(small + 1, large)}]


# glibc raises its mmap threshold each time a large block is freed, so whether a later
# tensor is mapped (and unmapped when freed) or carved from the heap depends on the
# history of the process: one variant's compile step then moved the 60M peak by ~190 MiB
# between identical runs. A fixed threshold, the same for every variant, removes that.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}


def _child_command(spec: dict[str, Any]) -> list[str]:
    """The command of one memory process, started through a small shell.

    Linux carries ``ru_maxrss`` across ``execve`` from the memory image being replaced:
    a child started straight from this (large) process would report at least this process's
    resident size. A shell that forks before running Python starts it from the shell's own
    small image (the trailing ``exit`` keeps bash from exec-ing in place).
    """
    argv = [sys.executable, "-c", _MEMORY_CHILD, json.dumps(spec)]
    if sys.platform.startswith("linux") and Path("/bin/sh").exists():
        return ["/bin/sh", "-c", '"$0" "$@"; exit $?', *argv]
    return argv


def _memory_child(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    try:
        done = subprocess.run(
            _child_command(spec),
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **MALLOC_ENV},
        )
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timed out after {timeout:.0f} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {**spec, "error": f"exit {done.returncode}: {tail[:300]}"}
    return {**spec, **json.loads(lines[-1])}


def _fit(points: list[dict[str, Any]], key: str) -> tuple[float, float]:
    """Slope (MiB per million parameters) and intercept (MiB) through the two sizes."""
    (n0, m0), (n1, m1) = ((p["numel"] / 1e6, p[key]) for p in points)
    slope = (m1 - m0) / (n1 - n0)
    return slope, m0 - slope * n0


def memory(
    scale: float = 1.0,
    steps: int = 5,
    batch: int = 8,
    jobs: int = 2,
    timeout: float = 900.0,
    progress: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Peak RSS per variant at two model sizes, each in its own process; slope and intercept."""
    specs = [
        {"variant": v, "steps": steps, "batch": batch, **m}
        for m in memory_models(scale)
        for v in MEMORY_VARIANTS
    ]
    progress(f"memory: {len(specs)} processes, {jobs} at a time")
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        runs = list(pool.map(lambda s: _memory_child(s, timeout), specs))
    variants: dict[str, dict[str, Any]] = {}
    for v in MEMORY_VARIANTS:
        points = [r for r in runs if r["variant"] == v]
        entry: dict[str, Any] = {"runs": points}
        errors = [r["error"] for r in points if "error" in r]
        if errors:
            entry["error"] = errors[0]
        else:
            slope, intercept = _fit(points, "peak_mib")
            model_slope, _ = _fit(points, "peak_model_mib")
            entry.update(
                {
                    "peak_mib": [r["peak_mib"] for r in points],
                    "numel": [r["numel"] for r in points],
                    "mib_per_m_params": slope,
                    "bytes_per_param": slope * 2**20 / 1e6,
                    "fixed_mib": intercept,
                    # what the optimizer adds on top of model + gradients, per parameter
                    "optimizer_bytes_per_param": (slope - model_slope) * 2**20 / 1e6,
                }
            )
        variants[v] = entry
    fused = variants["torch fused"].get("mib_per_m_params")
    for entry in variants.values():
        if "mib_per_m_params" in entry:
            ok = fused is not None and fused > 0
            entry["slope_vs_fused"] = entry["mib_per_m_params"] / fused if ok else None
    return {
        "models": memory_models(scale),
        "steps": steps,
        "batch": batch,
        "jobs": jobs,
        "optimizer": "adamw",
        "variants": variants,
    }


# ------------------------------------------------------------------------------------ run


MAX_SCALE = 10.0  # 200M elements in the big layout: more than that is not a quick check


def check_args(scale: float, reps: int, warmup: int = 2, memory_jobs: int = 2) -> None:
    """Raise ``ValueError`` (one line, with the valid range) on a bad benchmark argument."""
    if not (isinstance(scale, int | float) and math.isfinite(scale) and 0 < scale <= MAX_SCALE):
        raise ValueError(f"--scale must be a number with 0 < scale <= {MAX_SCALE:g}, got {scale}")
    for name, value, low in (("--reps", reps, 1), ("--warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value}")
    if isinstance(memory_jobs, bool) or not isinstance(memory_jobs, int) or memory_jobs < 1:
        raise ValueError(f"--memory-jobs must be an integer >= 1, got {memory_jobs}")


def check_out(path: Path) -> None:
    """Raise ``ValueError`` unless ``path`` can be written as a file (nothing is created)."""
    if path.is_dir():
        raise ValueError(f"--out {path} is a directory; give a .json file path")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"--out {path}: {folder} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".bench-write-test-"):
            pass
        if path.exists():
            with path.open("r+b"):
                pass
    except OSError as exc:
        raise ValueError(f"--out {path}: cannot write there: {exc.strerror}") from None


def run(
    optimizers: list[str] | None = None,
    layout_names: list[str] | None = None,
    scale: float = 1.0,
    reps: int = 15,
    progress: Callable[[str], None] = lambda s: None,
    device: str = "cpu",
    warmup: int = 2,
    measure_memory: bool = True,
    memory_jobs: int = 2,
) -> dict[str, Any]:
    """Time every variant (and measure peak memory); returns a JSON-able report."""
    check_args(scale, reps, warmup, memory_jobs)
    optimizers = [ALIASES.get(o, o) for o in optimizers] if optimizers else list(TORCH)
    all_layouts = layouts(scale)
    keys = [layout_key(n) for n in layout_names] if layout_names else list(all_layouts)
    load_before = os.getloadavg()
    cache = _inductor_cache()
    bandwidth = stream_bandwidth(max(1_000_000, all_layouts["big"].numel), device=device)
    rows = []
    for key in dict.fromkeys(keys):
        layout = all_layouts[key]
        for name in optimizers:
            progress(f"{name} on {layout.label}")
            rows += _time_case(name, layout, device, reps, warmup)
    load_after_timing = os.getloadavg()
    report: dict[str, Any] = {
        "machine": {
            "device": device if device == "cpu" else torch.cuda.get_device_name(device),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "python": sys.version.split()[0],
            "descentlab": _source(),
            "threads": torch.get_num_threads(),
            "loadavg_before": load_before,
            "loadavg_after_timing": load_after_timing,
            # compile times are shorter when torch.compile's on-disk cache is warm
            "inductor_cache": cache,
        },
        "loop": "fresh gradient tensors each step (clone, untimed); "
        "timed: step() + zero_grad() (set_to_none=True)",
        "stream_gb_per_s": bandwidth,
        "scale": scale,
        "reps": reps,
        "warmup": warmup,
        "rows": rows,
        "numpy": numpy_vs_seed(max(10_000, int(10_000_000 * scale)), reps),
        "telemetry": telemetry_overhead(scale, max(8, reps), device),
    }
    if measure_memory and device == "cpu":  # host RSS says nothing about device memory
        report["memory"] = memory(scale, jobs=memory_jobs, progress=progress)
    report["machine"]["loadavg_after"] = os.getloadavg()
    return report


def _source() -> dict[str, Any]:
    """descentlab's version, and the git commit it runs from (with uncommitted edits?)."""
    from . import __version__

    here = Path(__file__).resolve().parent
    out: dict[str, Any] = {"version": __version__, "commit": None, "dirty": None}
    try:
        git = ["git", "-C", str(here)]
        rev = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
        if rev.returncode == 0:
            out["commit"] = rev.stdout.strip()
            diff = subprocess.run(
                [*git, "status", "--porcelain", "--", str(here)], capture_output=True, text=True
            )
            out["dirty"] = bool(diff.stdout.strip())
    except OSError:  # no git: the version says enough
        pass
    return out


def _inductor_cache() -> dict[str, Any]:
    try:
        from torch._inductor.runtime.cache_dir_utils import cache_dir

        path = cache_dir()
    except Exception:  # a private API: only context for the compile times
        return {"dir": None, "existed": None}
    return {"dir": path, "existed": os.path.isdir(path)}


def _seed_adam_update(w, grad, m, v, t, alpha=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):  # type: ignore[no-untyped-def]
    # The seed document's NumPy Adam, verbatim: a new array for every operation.
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * (grad**2)
    m_hat = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    w = w - alpha * m_hat / (np.sqrt(v_hat) + eps)
    return w, m, v


def numpy_vs_seed(n: int, reps: int) -> dict[str, float]:
    """ms per Adam step at ``n`` float32 parameters: the seed's function vs descentlab."""
    from . import numpy as dnp

    rng = np.random.default_rng(0)
    w, g = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    m, v = np.zeros_like(w), np.zeros_like(w)
    ours_ref = dnp.Adam([w.copy()], engine="reference")
    ours_fast = dnp.Adam([w.copy()], engine="compiled")
    ours_fast.step([g])  # compile
    times: dict[str, list[float]] = {
        "seed adam_update": [],
        "descentlab reference": [],
        "descentlab compiled": [],
    }
    state = (w.copy(), m, v)
    for t in range(1, reps + 1):
        start = time.perf_counter()
        state = _seed_adam_update(state[0], g, state[1], state[2], t)
        times["seed adam_update"].append(time.perf_counter() - start)
        start = time.perf_counter()
        ours_ref.step([g])
        times["descentlab reference"].append(time.perf_counter() - start)
        start = time.perf_counter()
        ours_fast.step([g])
        times["descentlab compiled"].append(time.perf_counter() - start)
    out = {f"{k} ms": statistics.median(v) * 1e3 for k, v in times.items()}
    out["numel"] = n
    out["compiled speed-up vs seed"] = out["seed adam_update ms"] / out["descentlab compiled ms"]
    return out


# --------------------------------------------------------------------------------- report


def _cases(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    cases: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in rows:
        cases.setdefault((r["layout"], r["optimizer"]), {})[r["variant"]] = r
    return cases


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 150)  # a file or pipe: no need to wrap
    m = report["machine"]
    cases = _cases(report["rows"])
    present = [v for v in VARIANTS if any(v in c for c in cases.values())]
    table = Table(
        title=f"step() + zero_grad() with fresh gradients, fp32, ms (median of "
        f"{report['reps']}); ours: x = torch baseline time / ours, > 1 is faster",
        caption=f"{m['cpus']} CPUs, {m['threads']} threads, torch {m['torch']}; "
        f"stream a+=s*b {report['stream_gb_per_s']:.1f} GB/s; baseline: torch fused "
        "(rmsprop: torch's fastest)",
    )
    table.add_column("layout")
    table.add_column("params", justify="right")
    table.add_column("optimizer")
    for v in present:
        table.add_column(v.replace("descentlab ", "ours "), justify="right")
    table.add_column("fastest % stream", justify="right")
    for (layout, name), c in cases.items():
        cells = []
        for v in present:
            r = c.get(v)
            if r is None:
                cells.append("-")
            elif v.startswith("torch"):
                mark = "*" if v == r["baseline"] else ""
                cells.append(f"{r['ms']:.2f}{mark}")
            else:
                color = "green" if r["ratio"] >= 1 else "red"
                cells.append(f"{r['ms']:.2f} [{color}]{r['ratio']:.2f}x[/]")
        fastest = max(c.values(), key=lambda r: r["gb_per_s"])
        pct = 100 * fastest["gb_per_s"] / report["stream_gb_per_s"]
        any_row = next(iter(c.values()))
        cells.append(f"{pct:.0f}% {fastest['variant'].split(' ', 1)[1]}")
        table.add_row(layout, human(any_row["numel"]), name, *cells)
    console.print(table)

    first = Table(title="first step (ms; where descentlab compiles, once per process)")
    first.add_column("layout")
    first.add_column("optimizer")
    for v in present:
        first.add_column(v.replace("descentlab ", "ours "), justify="right")
    for (layout, name), c in cases.items():
        first.add_row(
            layout, name, *(f"{c[v]['first_step_ms']:.0f}" if v in c else "-" for v in present)
        )
    console.print(first)
    for r in report["rows"]:
        for w in r.get("warnings", []):
            console.print(f"[yellow]warning[/] {r['layout']} {r['optimizer']} {r['variant']}: {w}")

    mem = report.get("memory")
    if mem:
        sizes = [human(m_["width"] * (m_["width"] + 1) * m_["layers"]) for m_ in mem["models"]]
        table = Table(
            title=f"peak RSS, AdamW, {mem['steps']} steps of model(x).sum().backward() on a "
            f"stack of Linear layers (a fresh process each; 1st step includes compiling)"
        )
        table.add_column("variant")
        for s in sizes:
            table.add_column(f"peak MiB @ ~{s}", justify="right")
        for col in (
            "MiB / M params",
            "bytes / param",
            "of which optimizer",
            "fixed MiB",
            "slope vs fused",
            "1st step s",
        ):
            table.add_column(col, justify="right")
        for v, e in mem["variants"].items():
            if "error" in e:
                table.add_row(v, f"[red]{e['error']}[/]")
                continue
            table.add_row(
                v,
                *(f"{x:.0f}" for x in e["peak_mib"]),
                f"{e['mib_per_m_params']:.1f}",
                f"{e['bytes_per_param']:.1f}",
                f"{e['optimizer_bytes_per_param']:.1f}",
                f"{e['fixed_mib']:.0f}",
                "-" if e["slope_vs_fused"] is None else f"{e['slope_vs_fused']:.2f}x",
                " / ".join(f"{r['first_step_s']:.1f}" for r in e["runs"]),
            )
        console.print(table)
    npy = report["numpy"]
    console.print(
        f"NumPy Adam at {npy['numel']:,} params: "
        f"seed adam_update {npy['seed adam_update ms']:.1f} ms, "
        f"descentlab reference {npy['descentlab reference ms']:.1f} ms, compiled "
        f"{npy['descentlab compiled ms']:.1f} ms ({npy['compiled speed-up vs seed']:.1f}x the seed)"
    )
    tel = report.get("telemetry")
    if tel:
        parts = [
            f"{r['optimizer']} {r['ms']:.2f} -> {r['ms_with_telemetry']:.2f} ms "
            f"({r['overhead_pct']:+.1f}%, quartiles {r['overhead_pct_quartiles'][0]:+.1f}.."
            f"{r['overhead_pct_quartiles'][1]:+.1f}%)"
            for r in tel["rows"]
        ]
        console.print(
            f"telemetry every {tel['every']} steps, AdamW on {tel['layout']}, median of "
            f"{tel['blocks']} blocks: " + "; ".join(parts)
        )
    console.print(
        f"load average before {m['loadavg_before']}, after timing {m['loadavg_after_timing']}, "
        f"after {m['loadavg_after']}"
    )


def save(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(path)
