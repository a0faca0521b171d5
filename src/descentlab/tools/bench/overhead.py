"""The telemetry overhead: step time with and without ``descentlab.telemetry(every=10)``."""

from __future__ import annotations

import statistics
from typing import Any

import torch

from ... import torch as dt
from .layouts import layouts
from .steps import Variant, make_grads, make_params

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
    from ...diagnostics.telemetry import telemetry

    layout = layouts(scale)["gpt"]
    grads = make_grads(layout.shapes, device)
    pairs = {
        "torch foreach": lambda ps: torch.optim.AdamW(ps, lr=1e-3, foreach=True),
        "descentlab default": lambda ps: dt.AdamW(ps, lr=1e-3),
    }
    variants: list[tuple[str, bool, Variant, Any]] = []
    for label, make in pairs.items():
        for watched in (False, True):
            params = make_params(layout.shapes, device)
            opt = make(params)
            handle = telemetry(opt, every=TELEMETRY_EVERY) if watched else None
            variants.append((label, watched, Variant(label, opt, params), handle))
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
