"""Small shared helpers for the tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Normwise relative error max|a - b| / max(max|b|, tiny)."""
    a, b = torch.as_tensor(a).detach(), torch.as_tensor(b).detach()
    if a.is_complex() or b.is_complex():
        a, b = torch.view_as_real(a.cdouble()), torch.view_as_real(b.cdouble())
    a, b = a.double(), b.double()
    if a.numel() == 0:
        return 0.0
    scale = b.abs().max().item()
    return (a - b).abs().max().item() / max(scale, 1e-300)


def mlp(seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).to(
        dtype
    )


def random_params(seed: int = 0, dtype: torch.dtype = torch.float64) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    shapes = [(5, 3), (7,), (2, 2, 2)]
    return [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype)) for s in shapes]


def watch_eager_calls(monkeypatch: Any, before_each: Callable[[int], None] | None = None) -> dict:
    """Count the eager engine's calls (``counts["n"]``; ``counts["one"]`` of them by its
    per-tensor form), calling ``before_each(n)`` before the n-th (1-based; it may raise to
    plant a failure)."""
    from descentlab.engines import compiled

    counts = {"n": 0, "one": 0}
    real = compiled.program

    def watched(rule: Any, names: Any) -> Any:
        prog = real(rule, names)

        def run(*args: Any) -> None:
            counts["n"] += 1
            if before_each is not None:
                before_each(counts["n"])
            prog.run(*args)

        def one(*args: Any) -> None:
            counts["n"] += 1
            counts["one"] += 1
            if before_each is not None:
                before_each(counts["n"])
            prog.run_one(*args)

        return type("P", (), {"run": staticmethod(run), "run_one": staticmethod(one)})()

    monkeypatch.setattr(compiled, "program", watched)
    return counts
