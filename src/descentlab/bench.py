"""Step-time benchmark: descentlab's engines against torch.optim, side by side in one run.

Every variant of a case is timed round-robin (one step each, repeated), so machine load hits
them alike; the results are ratios to torch's fastest path and effective GB/s against the
streaming bandwidth measured in the same run (an in-place ``a += s * b``).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import torch as dt

# bytes moved per fp32 parameter: reads (p, g, state...) + writes (p, state...)
BYTES = {"adam": 28, "adamw": 28, "sgd-momentum": 20, "rmsprop": 20}
TORCH = {
    "adam": (torch.optim.Adam, dt.Adam, {"lr": 1e-3}),
    "adamw": (torch.optim.AdamW, dt.AdamW, {"lr": 1e-3}),
    "sgd-momentum": (torch.optim.SGD, dt.SGD, {"lr": 1e-3, "momentum": 0.9}),
    "rmsprop": (torch.optim.RMSprop, dt.RMSprop, {"lr": 1e-3}),
}
FUSED = {"adam", "adamw", "sgd-momentum"}  # torch has no fused CPU RMSprop


def layouts(scale: float = 1.0) -> dict[str, list[tuple[int, ...]]]:
    """Parameter shapes per layout; ``scale`` shrinks every layout for quick runs."""
    big = max(1, int(50_000_000 * scale))
    small = max(1, int(5000 * scale))
    d, layers, vocab = 256, max(1, int(12 * scale)), 5000
    mix: list[tuple[int, ...]] = [(vocab, d), (1024, d)]
    for _ in range(layers):
        mix += [
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
    mix += [(d,), (d,)]
    return {"1 x 50M": [(big,)], "5000 x 1k": [(1000,)] * small, "transformer mix": mix}


def _params(shapes: list[tuple[int, ...]], device: str) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(0)
    out = []
    for s in shapes:
        p = torch.nn.Parameter(torch.randn(s, generator=gen).to(device))
        p.grad = (torch.randn(s, generator=gen) * 1e-2).to(device)
        out.append(p)
    return out


def _timed(fn: Callable[[], Any], device: str) -> Callable[[], Any]:
    """``fn`` that returns only once the device has finished (CUDA runs asynchronously)."""
    if not device.startswith("cuda"):
        return fn

    def run() -> Any:
        out = fn()
        torch.cuda.synchronize()
        return out

    return run


def stream_bandwidth(n: int = 50_000_000, reps: int = 10, device: str = "cpu") -> float:
    """GB/s of an in-place ``a += s * b`` (3 x 4 bytes per element), the step's ceiling."""
    a, b = torch.randn(n, device=device), torch.randn(n, device=device)
    step = _timed(lambda: a.add_(b, alpha=1e-6), device)
    step()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return 12 * n / min(times) / 1e9


def _variants(
    name: str, shapes: list[tuple[int, ...]], device: str
) -> dict[str, Callable[[], Any]]:
    theirs, ours, hp = TORCH[name]
    out: dict[str, Callable[[], Any]] = {}
    for label, kw in (("torch for-loop", {"foreach": False}), ("torch foreach", {"foreach": True})):
        out[label] = theirs(_params(shapes, device), **hp, **kw).step
    if name in FUSED:
        out["torch fused"] = theirs(_params(shapes, device), **hp, fused=True).step
    opt = ours(_params(shapes, device), **hp, engine="flat")
    opt.step()  # builds the flat buffer and compiles (cached across runs)
    opt.zero_grad(set_to_none=False)  # .grad -> views of the flat gradient buffer
    for bucket in opt._buckets.values():
        bucket.g_flat.normal_(std=1e-2)
    out["descentlab flat"] = opt.step
    return {k: _timed(v, device) for k, v in out.items()}


def run(
    optimizers: list[str] | None = None,
    layout_names: list[str] | None = None,
    scale: float = 1.0,
    reps: int = 15,
    progress: Callable[[str], None] = lambda s: None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Time every variant; returns a JSON-able report (also the numpy comparison)."""
    optimizers = optimizers or list(TORCH)
    all_layouts = layouts(scale)
    layout_names = layout_names or list(all_layouts)
    load_before = os.getloadavg()
    bandwidth = stream_bandwidth(max(1_000_000, int(50_000_000 * scale)), device=device)
    rows = []
    for lname in layout_names:
        shapes = all_layouts[lname]
        numel = sum(int(np.prod(s)) for s in shapes)
        for name in optimizers:
            progress(f"{name} on {lname}")
            variants = _variants(name, shapes, device)
            for fn in variants.values():  # warm up
                fn()
            times: dict[str, list[float]] = {k: [] for k in variants}
            for _ in range(reps):
                for label, fn in variants.items():
                    t = time.perf_counter()
                    fn()
                    times[label].append(time.perf_counter() - t)
            med = {k: statistics.median(v) for k, v in times.items()}
            best_torch = min(v for k, v in med.items() if k.startswith("torch"))
            for label, t in med.items():
                rows.append(
                    {
                        "layout": lname,
                        "optimizer": name,
                        "variant": label,
                        "tensors": len(shapes),
                        "numel": numel,
                        "ms": t * 1e3,
                        "steps_per_s": 1 / t,
                        "gb_per_s": BYTES[name] * numel / t / 1e9,
                        "vs_torch_fastest": best_torch / t,
                    }
                )
            del variants
    report = {
        "machine": {
            "device": device if device == "cpu" else torch.cuda.get_device_name(device),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "stream_gb_per_s": bandwidth,
        "scale": scale,
        "reps": reps,
        "rows": rows,
        "numpy": numpy_vs_seed(max(10_000, int(10_000_000 * scale)), reps),
    }
    return report


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


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(
        title=f"optimizer step, fp32, {report['machine']['cpus']} CPUs "
        f"(stream a+=s*b: {report['stream_gb_per_s']:.1f} GB/s)"
    )
    for col in ("layout", "optimizer", "variant", "ms/step", "GB/s", "% stream", "vs torch best"):
        table.add_column(col, justify="right" if col[0] in "mGv%" else "left")
    for r in report["rows"]:
        table.add_row(
            r["layout"],
            r["optimizer"],
            r["variant"],
            f"{r['ms']:.2f}",
            f"{r['gb_per_s']:.1f}",
            f"{100 * r['gb_per_s'] / report['stream_gb_per_s']:.0f}",
            f"{r['vs_torch_fastest']:.2f}x",
        )
    console.print(table)
    npy = report["numpy"]
    console.print(
        f"NumPy Adam at {npy['numel']:,} params: "
        f"seed adam_update {npy['seed adam_update ms']:.1f} ms, "
        f"descentlab reference {npy['descentlab reference ms']:.1f} ms, compiled "
        f"{npy['descentlab compiled ms']:.1f} ms ({npy['compiled speed-up vs seed']:.1f}x the seed)"
    )
    m = report["machine"]
    console.print(f"load average before {m['loadavg_before']}, after {m['loadavg_after']}")


def save(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(path)
