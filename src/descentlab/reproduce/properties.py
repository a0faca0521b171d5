"""The seed's "Key Properties" table, regenerated from the live optimizers."""

from __future__ import annotations

import torch

from .. import torch as dt
from .base import Claim, Context, Measurement, Statement, require

# (row of the seed's table, how descentlab builds it, the seed's memory and adaptive cells,
#  the claim whose measurement bears on its "best for" cell)
ROWS = (
    ("SGD (batch, one-sample, mini-batch)", lambda p: dt.SGD(p, lr=1e-3), "none", "no", "regimes"),
    (
        "Momentum (torch's heavy-ball)",
        lambda p: dt.SGD(p, lr=1e-3, momentum=0.9),
        "velocity v",
        "no",
        "momentum-ravine",
    ),
    (
        "Momentum (the seed's EMA)",
        lambda p: dt.Momentum(p, lr=1e-3),
        "velocity v",
        "no",
        "momentum-noise",
    ),
    ("RMSProp", lambda p: dt.RMSprop(p, lr=1e-3), "gradient² s", "yes", "rmsprop-scales"),
    ("Adam", lambda p: dt.Adam(p, lr=1e-3), "m and v", "yes", "adam-vs-sgd"),
    ("AdamW", lambda p: dt.AdamW(p, lr=1e-3), "m and v", "yes", "adam-l2-vs-adamw"),
)
SEED_BYTES = {"none": 0, "velocity v": 4, "gradient² s": 4, "m and v": 8}  # per fp32 weight


def _state_bytes(make) -> float:
    p = torch.nn.Parameter(torch.zeros(1000))
    opt = make([p])
    p.grad = torch.ones(1000)
    opt.step()
    total = sum(
        t.numel() * t.element_size()
        for k, t in opt.state[p].items()
        if k != "step" and isinstance(t, torch.Tensor)
    )
    return total / p.numel()


def _step_spread(make) -> float:
    """Largest / smallest first-steps of three weights whose gradients span 1e6."""
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = make([p])
    p.grad = torch.tensor([1e-3, 1.0, 1e3], dtype=torch.float64)
    for _ in range(3):
        opt.step()
    size = p.detach().abs().numpy()
    return float(size.max() / size.min())


def measure(ctx: Context) -> Measurement:
    fig: dict[str, float] = {}
    rows = []
    for name, make, memory, adaptive, evidence in ROWS:
        nbytes = _state_bytes(make)
        spread = _step_spread(make)
        fig[f"{name}: state bytes per weight"] = nbytes
        fig[f"{name}: step spread for gradients 1e6 apart"] = spread
        rows.append(
            [
                name,
                memory,
                f"{nbytes:g}",
                adaptive,
                "yes" if spread < 100 else "no",
                f"see '{evidence}'",
            ]
        )
    memory_ok = all(fig[f"{n}: state bytes per weight"] == SEED_BYTES[m] for n, _, m, _, _ in ROWS)
    adaptive_ok = all(
        (fig[f"{n}: step spread for gradients 1e6 apart"] < 100) == (a == "yes")
        for n, _, _, a, _ in ROWS
    )
    fig["memory column matches (1 = yes)"] = float(memory_ok)
    fig["adaptive column matches (1 = yes)"] = float(adaptive_ok)
    return Measurement(
        fig,
        table=(
            [
                "optimizer",
                "seed: memory",
                "measured state bytes / fp32 weight",
                "seed: adaptive",
                "measured: adaptive",
                "best for: evidence",
            ],
            rows,
        ),
        remarks=[
            "State is measured on the live optimizer after one step ('step' counters excluded). "
            "'Adaptive' is measured: three weights whose gradients are 1e-3, 1 and 1e3 take three "
            "steps; an adaptive method moves them within 100x of each other, a plain one 1e6x "
            "apart. A float32 slot is 4 bytes per weight."
        ],
    )


CLAIM = Claim(
    key="key-properties",
    title="The Key Properties table, regenerated",
    quote=(
        "| Optimizer | Memory | Adaptive LR | Best For | ... SGD: none, no ... Momentum: "
        "velocity v, no ... RMSProp: gradient² s, yes ... Adam: m and v, yes"
    ),
    experiment=(
        "Measure each live optimizer's state per weight and whether its step adapts to "
        "the gradient's scale; the 'best for' cells point to the claims whose "
        "measurements bear on them."
    ),
    statements=(
        Statement(
            "memory",
            "Memory: SGD keeps nothing, momentum a velocity, RMSProp a squared-gradient "
            "average, Adam both m and v.",
            (
                require(
                    "the memory column matches the measured state (0, 4, 4, 8 bytes per fp32 "
                    "weight)",
                    "memory column matches (1 = yes)",
                    ">=",
                    1.0,
                ),
            ),
            exact=True,  # a property of the implementations, read from them
        ),
        Statement(
            "adaptive",
            "Adaptive LR: no for SGD and momentum, yes for RMSProp and Adam.",
            (
                require(
                    "the adaptive column matches the measured behaviour",
                    "adaptive column matches (1 = yes)",
                    ">=",
                    1.0,
                ),
            ),
            exact=True,  # a property of the implementations, read from them
        ),
    ),
    measure=measure,
)
