"""The NumPy Adam step: the seed document's ``adam_update`` against descentlab's NumPy
drop-in (reference and compiled engines)."""

from __future__ import annotations

import statistics
import time

import numpy as np


def _seed_adam_update(w, grad, m, v, t, alpha=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    # The seed document's NumPy Adam, verbatim: a new array for every operation.
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * (grad**2)
    m_hat = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    w = w - alpha * m_hat / (np.sqrt(v_hat) + eps)
    return w, m, v


def numpy_vs_seed(n: int, reps: int) -> dict[str, float]:
    """ms per Adam step at ``n`` float32 parameters: the seed's function vs descentlab."""
    from ... import numpy as dnp

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
