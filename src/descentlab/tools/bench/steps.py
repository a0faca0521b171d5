"""Step time: every variant of one (optimizer, layout) case timed round-robin on the loop
users write, against torch.optim's variants and the machine's streaming bandwidth.

Before each timed step every parameter gets a fresh gradient tensor (a clone of a fixed
gradient, as autograd makes a new tensor each backward; the cloning is not timed), then
``step()`` + ``zero_grad()`` are timed. The first step of each variant (where descentlab's
compiled engines compile) is timed apart; a few warm-up steps follow before the timed ones.
"""

from __future__ import annotations

import gc
import inspect
import math
import statistics
import time
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from ... import torch as dt
from .layouts import Layout

# bytes moved per fp32 parameter: reads (p, g, state...) + writes (p, state...)
BYTES = {
    "adam": 28,
    "adamw": 28,
    "sgd:momentum=0.9": 20,
    "rmsprop": 20,
    "adagrad": 20,
    "adadelta": 28,
    "adamax": 28,
    "radam": 28,
    "nadam": 28,
    "asgd": 20,  # p, g, ax read; p, ax written
    "rprop": 28,  # p, g, prev, step_size read; p, prev, step_size written
    "adafactor": 12,  # p, g read, p written; its factored moments are negligible
    "muon": 16,  # p, g, momentum read; p written (and the matrix products' own traffic)
}
TORCH = {
    "adam": (torch.optim.Adam, dt.Adam, {"lr": 1e-3}),
    "adamw": (torch.optim.AdamW, dt.AdamW, {"lr": 1e-3}),
    "sgd:momentum=0.9": (torch.optim.SGD, dt.SGD, {"lr": 1e-3, "momentum": 0.9}),
    "rmsprop": (torch.optim.RMSprop, dt.RMSprop, {"lr": 1e-3}),
    "adagrad": (torch.optim.Adagrad, dt.Adagrad, {"lr": 1e-2}),
    "adadelta": (torch.optim.Adadelta, dt.Adadelta, {"lr": 1.0}),
    "adamax": (torch.optim.Adamax, dt.Adamax, {"lr": 2e-3}),
    "radam": (torch.optim.RAdam, dt.RAdam, {"lr": 1e-3}),
    "nadam": (torch.optim.NAdam, dt.NAdam, {"lr": 2e-3}),
    "asgd": (torch.optim.ASGD, dt.ASGD, {"lr": 1e-2}),
    "rprop": (torch.optim.Rprop, dt.Rprop, {"lr": 1e-2}),
}
for _name in ("Adafactor", "Muon"):  # in torch 2.5+ and 2.9+
    if hasattr(torch.optim, _name):
        TORCH[_name.lower()] = (getattr(torch.optim, _name), getattr(dt, _name), {"lr": 1e-2})
MATRICES_ONLY = {"muon"}  # timed on the layout's matrices alone
FUSED = {"adam", "adamw", "sgd:momentum=0.9", "adagrad"}  # torch's fused CPU kernels
DEFAULT = ("adam", "adamw", "sgd:momentum=0.9", "rmsprop")  # the others on request
# Names are the lab's optimizer specs (``descentlab compare --optimizers``); older names
# are still accepted.
ALIASES = {"sgd-momentum": "sgd:momentum=0.9"}  # torch has no fused CPU RMSprop
TORCH_VARIANTS: dict[str, dict[str, Any]] = {
    "torch for-loop": {"foreach": False},
    "torch foreach": {"foreach": True},
    "torch fused": {"fused": True},
}
OURS_VARIANTS: dict[str, dict[str, Any]] = {
    "descentlab eager": {"engine": "eager"},  # the default's engine until compiling pays
    "descentlab compiled": {"engine": "compiled"},  # the default's engine in long runs
    "descentlab flat": {"engine": "flat"},
}
# The flat engine's own loop: zero_grad(set_to_none=False) keeps every .grad a view of the
# flat gradient buffer, so backward accumulates straight into it (no gather copy).
FLAT_KEEP = "descentlab flat, grads kept"
# The user's own torch.compile of opt.step (torch's documented recipe), on request: each
# compiles at its first step (inductor, seconds to minutes on a CPU); descentlab's step is
# then traced into the graph (engine_counts["traced"]).
COMPILED_STEP = {"torch": "torch, torch.compile(step)", "ours": "descentlab, torch.compile(step)"}
VARIANTS = (*TORCH_VARIANTS, *OURS_VARIANTS, FLAT_KEEP, *COMPILED_STEP.values())


def sync(device: str) -> None:
    """Wait for the device (a no-op on the CPU), so that a timer reads finished work."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def stream_bandwidth(n: int = 50_000_000, reps: int = 10, device: str = "cpu") -> float:
    """GB/s of an in-place ``a += s * b`` (3 x 4 bytes per element), the step's ceiling."""
    a, b = torch.randn(n, device=device), torch.randn(n, device=device)
    a.add_(b, alpha=1e-6)
    times = []
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        a.add_(b, alpha=1e-6)
        sync(device)
        times.append(time.perf_counter() - t)
    return 12 * n / min(times) / 1e9


def make_params(shapes: list[tuple[int, ...]], device: str) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(s, generator=gen).to(device)) for s in shapes]


def make_grads(shapes: list[tuple[int, ...]], device: str) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(s, generator=gen) * 1e-2).to(device) for s in shapes]


@dataclass
class Variant:
    label: str
    opt: torch.optim.Optimizer
    params: list[torch.nn.Parameter]
    keep_grads: bool = False
    call: Any = None  # what runs the step: opt.step, or the user's torch.compile of it

    def __post_init__(self) -> None:
        if self.call is None:
            self.call = self.opt.step

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
        sync(device)
        t = time.perf_counter()
        self.call()
        self.opt.zero_grad(set_to_none=not self.keep_grads)
        sync(device)
        return time.perf_counter() - t


def make_variants(
    name: str, shapes: list[tuple[int, ...]], device: str, compile_step: bool = False
) -> list[Variant]:
    """torch's implementations of ``name`` that exist (for-loop, foreach, fused) beside
    descentlab's engines that can run its rule (the flat ones need an element-wise rule
    without per-parameter scalars; Adafactor and Muon run on the reference engine); with
    ``compile_step``, both defaults under the user's ``torch.compile(opt.step)`` too."""
    theirs, ours, hp = TORCH[name]
    accepts = inspect.signature(theirs).parameters
    out = []
    for label, kw in TORCH_VARIANTS.items():
        if label == "torch for-loop" and "foreach" not in accepts:
            kw = {}  # a single-tensor class without the choice (Muon)
        if ("fused" in kw and name not in FUSED) or not set(kw) <= set(accepts):
            continue
        params = make_params(shapes, device)
        out.append(Variant(label, theirs(params, **hp, **kw), params))
    info = ours.info  # type: ignore[attr-defined]
    flat_able = info.rule(info.with_defaults(**hp)).runs_flat
    for label, kw in OURS_VARIANTS.items():
        if kw.get("engine") == "flat" and not flat_able:
            continue
        params = make_params(shapes, device)
        out.append(Variant(label, ours(params, **hp, **kw), params))
    if flat_able:
        params = make_params(shapes, device)
        out.append(Variant(FLAT_KEEP, ours(params, **hp, engine="flat"), params, keep_grads=True))
    if compile_step:
        # Every variant compiles its own step, in one process: dynamo's recompile limit
        # (8 per code object; torch.optim's step wrapper is one code object for all of
        # them) would otherwise send the later ones back to eager Python without a word.
        config = torch._dynamo.config
        config.recompile_limit = max(config.recompile_limit, 256)
        config.accumulated_recompile_limit = max(config.accumulated_recompile_limit, 4096)
        for key, cls in (("torch", theirs), ("ours", ours)):
            params = make_params(shapes, device)
            opt = cls(params, **hp)
            out.append(Variant(COMPILED_STEP[key], opt, params, call=torch.compile(opt.step)))
    return out


def time_case(
    name: str, layout: Layout, device: str, reps: int, warmup: int, compile_step: bool = False
) -> list[dict[str, Any]]:
    """Rows for one (optimizer, layout): every variant timed round-robin."""
    shapes: list[tuple[int, ...]] = list(layout.shapes)
    if name in MATRICES_ONLY:
        shapes = [s for s in shapes if len(s) == 2]
    numel = sum(math.prod(s) for s in shapes)
    if not shapes:  # Muon on a layout without matrices: nothing it can step
        return []
    grads = make_grads(shapes, device)
    variants = make_variants(name, shapes, device, compile_step)
    caught: dict[str, list[str]] = {v.label: [] for v in variants}
    first: dict[str, float] = {}
    times: dict[str, list[float]] = {v.label: [] for v in variants}
    gc.collect()
    with warnings.catch_warnings(record=True) as log:
        warnings.simplefilter("always")

        def step(v: Variant) -> float:
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
            "tensors": len(shapes),
            "numel": numel,
            "ms": t * 1e3,
            "ms_min": min(times[v.label]) * 1e3,
            "ms_max": max(times[v.label]) * 1e3,
            "first_step_ms": first[v.label] * 1e3,
            "steps_per_s": 1 / t,
            "gb_per_s": BYTES[name] * numel / t / 1e9,
            "baseline": baseline,
            "ratio": med[baseline] / t,  # > 1: faster than torch's baseline
            "vs_torch_fastest": best_torch / t,
            "vs_torch_fused": med["torch fused"] / t if "torch fused" in med else None,
        }
        if COMPILED_STEP["torch"] in med:
            row["vs_torch_compiled_step"] = med[COMPILED_STEP["torch"]] / t
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
