"""Lab run records built by hand, as the runner writes them, for the report's tests."""

from __future__ import annotations

from typing import Any

START = 64.0  # every constructed run starts at this loss


def run_record(
    optimizer: str,
    lr: float,
    seed: int,
    losses: list[float],
    *,
    workload: str = "toy",
    accs: list[float] | None = None,
    diverged: bool = False,
    points: list[tuple[float, float]] | None = None,
) -> dict[str, Any]:
    """A run record as the runner writes it: evaluations at every step."""
    evals: list[dict[str, float]] = []
    for step, loss in enumerate([START, *losses]):
        e = {"step": step, "train_loss": loss}
        if accs is not None:
            e["test_acc"] = ([0.1, *accs])[step]
        evals.append(e)
    steps = len(losses)
    return {
        "spec": {
            "workload": workload,
            "options": {},
            "optimizer": optimizer,
            "lr": lr,
            "seed": seed,
            "regime": "full",
            "steps": steps,
            "eval_every": 1,
        },
        "id": f"{workload}-{optimizer}-{lr}-{seed}",
        "loss": losses,
        "time": [0.01 * (i + 1) for i in range(steps)],
        "evals": evals,
        "points": points or [],
        "diverged": diverged,
    }


def ravine_like() -> list[dict[str, Any]]:
    """lr 0.1 (the grid's largest) ends lowest only by round-off; lr 0.03 reaches 0.3 first."""
    rows = []
    for seed in (0, 1):
        rows += [
            run_record("r", 0.01, seed, [10.0, 5.0, 1.0, 1.0]),
            run_record("r", 0.03, seed, [0.2, 1e-6, 1e-10, 1.8e-13]),
            run_record("r", 0.1, seed, [1.0, 0.2, 1e-12, 1.3e-16]),
            run_record("q", 0.1, seed, [0.2, 1e-9, 1e-50, 1e-120]),
        ]
    return rows
