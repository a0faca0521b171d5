"""The seed document's training loop, run with every variant, beside its torch.optim twin.

``descentlab demo`` trains the seed's ``nn.Linear(10, 1)`` on random data for 50 full-batch
epochs with each optimizer and prints the loss curve and the gap to torch.optim.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .. import torch as dt

EPOCHS = 50
SHOWN = (0, 10, 25, 49)


@dataclass(frozen=True)
class Entry:
    label: str
    ours: Callable[..., torch.optim.Optimizer]
    theirs: Callable[..., torch.optim.Optimizer] | None
    hp: dict[str, Any]
    theirs_hp: dict[str, Any] | None = None


ENTRIES = [
    Entry("SGD", dt.SGD, torch.optim.SGD, {"lr": 0.01}),
    Entry("SGD + momentum", dt.SGD, torch.optim.SGD, {"lr": 0.01, "momentum": 0.9}),
    # the seed's EMA momentum; torch twin: heavy-ball with lr * (1 - beta)
    Entry(
        "Momentum (EMA)",
        dt.Momentum,
        torch.optim.SGD,
        {"lr": 0.1, "momentum": 0.9},
        {"lr": 0.1 * (1 - 0.9), "momentum": 0.9},
    ),
    Entry("RMSprop", dt.RMSprop, torch.optim.RMSprop, {"lr": 1e-2}),
    Entry("Adam", dt.Adam, torch.optim.Adam, {"lr": 1e-3}),
    Entry("AdamW", dt.AdamW, torch.optim.AdamW, {"lr": 1e-3, "weight_decay": 0.01}),
    # torch.optim's other rules, descentlab's own too (Muon takes matrices only: the
    # seed's model has a bias vector)
    Entry("Adagrad", dt.Adagrad, torch.optim.Adagrad, {"lr": 1e-2}),
    Entry("Adadelta", dt.Adadelta, torch.optim.Adadelta, {"lr": 1.0}),
    Entry("Adamax", dt.Adamax, torch.optim.Adamax, {"lr": 2e-3}),
    Entry("RAdam", dt.RAdam, torch.optim.RAdam, {"lr": 1e-3}),
    Entry("NAdam", dt.NAdam, torch.optim.NAdam, {"lr": 2e-3}),
    Entry("ASGD", dt.ASGD, torch.optim.ASGD, {"lr": 0.01}),
    Entry("Rprop", dt.Rprop, torch.optim.Rprop, {"lr": 1e-3}),
    Entry("Adafactor", dt.Adafactor, torch.optim.Adafactor, {"lr": 1e-2}),
]


def _train(
    make: Callable[..., torch.optim.Optimizer], hp: dict[str, Any], seed: int
) -> list[float]:
    torch.manual_seed(seed)
    model = torch.nn.Linear(10, 1)
    x, y = torch.randn(100, 10), torch.randn(100, 1)
    opt = make(model.parameters(), **hp)
    loss_fn = torch.nn.MSELoss()
    losses = []
    for _ in range(EPOCHS):
        opt.zero_grad()  # clear accumulated gradients
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def run(seed: int = 0) -> list[dict[str, Any]]:
    """Train every entry with descentlab and with torch.optim; one row per optimizer."""
    rows = []
    for e in ENTRIES:
        start = time.perf_counter()
        ours = _train(e.ours, e.hp, seed)
        seconds = time.perf_counter() - start
        theirs = _train(e.theirs, e.theirs_hp or e.hp, seed) if e.theirs else None
        gap = max(abs(a - b) for a, b in zip(ours, theirs, strict=True)) if theirs else None
        rows.append(
            {"optimizer": e.label, "hp": e.hp, "losses": ours, "gap": gap, "seconds": seconds}
        )
    return rows


def main(seed: int = 0) -> int:
    from rich.console import Console
    from rich.table import Table

    rows = run(seed)
    table = Table(title=f"The seed's nn.Linear(10, 1) example, {EPOCHS} full-batch epochs")
    table.add_column("optimizer")
    table.add_column("hyperparameters")
    for epoch in SHOWN:
        table.add_column(f"epoch {epoch}", justify="right")
    table.add_column("vs torch", justify="right")
    for r in rows:
        hp = " ".join(f"{k}={v:g}" for k, v in r["hp"].items())
        gap = "-" if r["gap"] is None else f"{r['gap']:.1e}"
        table.add_row(r["optimizer"], hp, *(f"{r['losses'][i]:.4f}" for i in SHOWN), gap)
    console = Console()
    console.print(table)
    console.print(
        "Training loss per epoch; same model, data and seed for every row. 'vs torch' is the "
        "largest loss difference from the torch.optim twin over all epochs (float32)."
    )
    return 0
