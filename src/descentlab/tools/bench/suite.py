"""The whole benchmark: argument checks, the run of every part, and the machine context
saved beside the figures."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .layouts import layout_key, layouts
from .memory import memory
from .numpy_adam import numpy_vs_seed
from .overhead import telemetry_overhead
from .steps import ALIASES, DEFAULT, stream_bandwidth, time_case

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
    compile_step: bool = False,
) -> dict[str, Any]:
    """Time every variant (and measure peak memory); returns a JSON-able report."""
    check_args(scale, reps, warmup, memory_jobs)
    optimizers = [ALIASES.get(o, o) for o in optimizers] if optimizers else list(DEFAULT)
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
            rows += time_case(name, layout, device, reps, warmup, compile_step)
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
    from ... import __version__

    here = Path(__file__).resolve().parents[2]  # the descentlab package
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
