"""The decay claim (adam-l2-vs-adamw) trains every configuration and seed stacked into one
batched model: each run must come out as if it had been trained alone, the way it was before."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from descentlab import torch as dt
from descentlab.reproduce.common import one_thread
from descentlab.reproduce.decay import DECAY_BATCH, evaluate, splits, train_runs
from descentlab.reproduce.digits import Config, mlp

# Both rules, with and without decay, a scaled loss, and a run that diverges at once (an
# infinite loss scale): its NaNs must stay in its own rows.
CONFIGS: list[Config] = [
    ("adam", 1e-2, 1e-2, 1.0),
    ("adamw", 3e-3, 1.0, 1.0),
    ("adam", 3e-3, 0.0, 1.0),
    ("adamw", 3e-2, 10.0, 100.0),
    ("adam", 1e-2, 0.0, math.inf),
    ("adamw", 3e-3, 1.0, 100.0),
]
SEEDS = (0, 3, 7)
EPOCHS = 2


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """As the claim runs (and fast: these tiny steps only wait for a second thread)."""
    with one_thread():
        yield


@pytest.fixture(scope="module")
def data() -> tuple[Any, ...]:
    """200 training digits (3 full batches and one of 8 per epoch): a few fast steps."""
    (x, y), val, test = splits()
    return (x[:200], y[:200]), val, test


def _one_seed(
    data: tuple[Any, ...], name: str, lr: float, wd: float, seed: int, scale: float
) -> torch.nn.Module:
    """One run trained alone: the code path the stacked training replaced."""
    (x, y), _, _ = data
    torch.manual_seed(seed)
    model = mlp()
    cls = dt.AdamW if name == "adamw" else dt.Adam
    opt = cls(model.parameters(), lr=lr, weight_decay=wd)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(EPOCHS):
        for idx in torch.randperm(len(x), generator=gen).split(DECAY_BATCH):
            opt.zero_grad()
            (scale * torch.nn.functional.cross_entropy(model(x[idx]), y[idx])).backward()
            opt.step()
    return model


def test_each_stacked_run_equals_its_run_alone(data: tuple[Any, ...]) -> None:
    stacked = train_runs(data, CONFIGS, SEEDS, EPOCHS)
    assert len(stacked) == len(CONFIGS)
    for config, runs in zip(CONFIGS, stacked, strict=True):
        assert len(runs) == len(SEEDS)
        for seed, got in zip(SEEDS, runs, strict=True):
            want = evaluate(_one_seed(data, *config[:3], seed, config[3]), data)
            # rtol 1e-4: a batched matmul sums in another order than one run's, and Adam's
            # normalised step carries that round-off on (lr 0.03, decay 10, the loss x100:
            # one weight of 9610 off by 4e-5 relative on an AVX2 CPU, the losses equal)
            torch.testing.assert_close(
                got["w"], want["w"], rtol=1e-4, atol=1e-7, equal_nan=True, msg=f"{config} {seed}"
            )
            assert got["val_acc"] == want["val_acc"] and got["test_acc"] == want["test_acc"]
            assert math.isclose(got["val_loss"], want["val_loss"], rel_tol=1e-5)
    # the stack held a diverged run, and runs that did not
    assert stacked[4][0]["val_loss"] == math.inf and not torch.isfinite(stacked[4][0]["w"]).all()
    assert all(math.isfinite(r["val_loss"]) for runs in stacked[:4] for r in runs)


def test_a_configuration_gives_the_same_runs_alone_or_stacked_with_others(
    data: tuple[Any, ...],
) -> None:
    """measure_decay trains whatever is not cached yet together: what a run gives must not
    depend on what it was batched with, nor on where in the batch it sits."""
    alone = train_runs(data, CONFIGS[1:2], SEEDS[:2], EPOCHS)[0]
    mixed = train_runs(data, CONFIGS[::-1], SEEDS[:2], EPOCHS)[len(CONFIGS) - 2]
    for a, b in zip(alone, mixed, strict=True):
        torch.testing.assert_close(a["w"], b["w"], rtol=1e-5, atol=1e-7)
