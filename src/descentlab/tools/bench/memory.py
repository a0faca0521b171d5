"""Peak memory: ``ru_maxrss`` of a fresh process per variant and model size (the program
in :mod:`descentlab.tools.bench.memory_child`), and the slope and intercept through two sizes.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from . import memory_child

MEMORY_SIZES = (20_000_000, 60_000_000)  # parameters of the memory models at scale 1
MEMORY_WIDTH = 1024  # width of their Linear layers at scale 1
MEMORY_VARIANTS = ("torch fused", "descentlab auto", "descentlab flat")


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


# The child program is run from its file, not with ``python -m``: ``-m`` would import the
# descentlab package (and so its drop-ins) into the torch.optim variant's process, which must
# hold the user's program and nothing else. ``runpy.run_path`` on a file leaves ``sys.path``
# alone, so no module beside it can shadow one the program imports.
RUN_FILE = "import runpy, sys; runpy.run_path(sys.argv.pop(1), run_name='__main__')"


def _child_command(spec: dict[str, Any]) -> list[str]:
    """The command of one memory process, started through a small shell.

    Linux carries ``ru_maxrss`` across ``execve`` from the memory image being replaced:
    a child started straight from this (large) process would report at least this process's
    resident size. A shell that forks before running Python starts it from the shell's own
    small image (the trailing ``exit`` keeps bash from exec-ing in place).
    """
    argv = [sys.executable, "-c", RUN_FILE, str(Path(memory_child.__file__)), json.dumps(spec)]
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
