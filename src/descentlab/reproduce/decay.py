"""The seed's pitfall "Adam with weight decay is not AdamW", measured.

Every experiment here that has randomness (initialisation, data, batch order) runs over
several seeds and reports the mean, the spread and, for each comparison, in how many seeds
it goes the stated way. The models are tiny, so they run on one thread: a second one only
adds contention on a shared machine.
Every choice of lr and decay is made on a validation split carved from the training
digits; the test digits are read only at the chosen configuration. Every configuration
and seed trains stacked in one model (:func:`descentlab.reproduce.digits.train_stacked`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .. import numpy as dnp
from ..lab.workloads import digits_data
from .base import Claim, Context, EffectSpec, Measurement, Statement, require, support
from .common import one_thread, pyplot, save_figure, spread
from .digits import Config, accuracy, train_stacked
from .seeds import fraction, mean

Tensor = torch.Tensor


DECAY_LRS = (1e-3, 3e-3, 1e-2, 3e-2)  # the same for both, widened alike: equal budgets
WIDEN = 3
# The same decays for both. Adam's L2 term competes with the gradient inside the adaptive
# step; AdamW's decay multiplies the weights by (1 - lr * wd) per step, about exp(-wd) over
# the ~360 steps at lr 3e-3. The grid spans the range where each has an effect, from barely
# any to overwhelming.
DECAY_WDS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
DECAY_EPOCHS, DECAY_BATCH = 20, 64
PROBE_LR, PROBE_WD, LOSS_SCALE = 3e-3, 1.0, 100.0  # where the decay rules are compared as such
NAMES = {"adam": "Adam+L2", "adamw": "AdamW"}
_ALGEBRA = f"decay's part of the weights after 10 steps, changed by a {LOSS_SCALE:g}x loss (rel.)"
_APART = "decay's part of the weights after 10 steps, Adam+L2 vs AdamW (rel. distance)"
_TEST = "test accuracy at its selected lr and decay"
_PROBE = f"lr={PROBE_LR:g}, wd={PROBE_WD:g}"
_SCALED = f"weights change when the loss is scaled {LOSS_SCALE:g}x (rel.)"

Split = tuple[Tensor, Tensor]


def splits() -> tuple[Split, Split, Split]:
    """Training, validation (a fifth of the training digits, fixed) and test digits."""
    xtr, ytr, xte, yte = digits_data()
    order = np.random.default_rng(1).permutation(len(xtr))
    val, train = order[: len(xtr) // 5], order[len(xtr) // 5 :]

    def pair(x: np.ndarray, y: np.ndarray) -> Split:
        return torch.from_numpy(x).float(), torch.from_numpy(y).long()

    return pair(xtr[train], ytr[train]), pair(xtr[val], ytr[val]), pair(xte, yte)


def evaluate(model: torch.nn.Module, data: tuple[Split, Split, Split]) -> dict[str, Any]:
    """One seed's figures; a diverged run (non-finite loss or weights) scores as a failure."""
    _, (xv, yv), (xt, yt) = data
    w = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    with torch.no_grad():
        out = model(xv)
        val_loss = float(torch.nn.functional.cross_entropy(out, yv))
        val_acc = float((out.argmax(-1) == yv).float().mean())
    finite = math.isfinite(val_loss) and bool(torch.isfinite(w).all())
    return {
        "val_acc": val_acc if finite else 0.0,
        "val_loss": val_loss if finite else math.inf,
        "test_acc": accuracy(model, xt, yt) if finite else 0.0,
        "w": w,
    }


def train_runs(
    data: tuple[Split, Split, Split],
    configs: Sequence[Config],
    seeds: Sequence[int],
    epochs: int = DECAY_EPOCHS,
) -> list[list[dict[str, Any]]]:
    """Every seed's figures (in the order of ``seeds``) for each configuration."""
    (x, y), _, _ = data
    trained = train_stacked(x, y, configs, seeds, epochs, DECAY_BATCH)
    return [[evaluate(model, data) for model in models] for models in trained]


def _rel(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _decay_parts(scale: float, steps: int = 10) -> dict[str, np.ndarray]:
    """The decay's part of each rule's weights after ``steps`` steps on a fixed gradient
    sequence multiplied by ``scale`` (the weights with decay minus without): the algebra of
    where the decay enters, computed with the rules themselves."""
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal(8)
    grads = [scale * rng.standard_normal(8) * np.logspace(0, -3, 8) for _ in range(steps)]
    out = {}
    for name in NAMES:
        ends = []
        for wd in (PROBE_WD * 0.01, 0.0):
            opt = dnp.Transformation(name, lr=PROBE_LR, weight_decay=wd)
            w, state = w0.copy(), opt.init(w0)
            for g in grads:  # the loss's gradient; an L2 rule adds wd * w to it itself
                w, state = opt.update(w, g, state)
            ends.append(w)
        out[name] = ends[0] - ends[1]
    return out


def measure_decay(ctx: Context) -> Measurement:
    data = splits()
    seeds = range(ctx.seeds)
    epochs = DECAY_EPOCHS // 2 if ctx.quick else DECAY_EPOCHS  # quick: half the training
    cache: dict[Config, list[dict[str, Any]]] = {}

    def fill(keys: Sequence[Config]) -> None:
        # the runs not yet cached, trained together (see digits.train_stacked)
        todo = [k for k in dict.fromkeys(keys) if k not in cache]
        if todo:
            cache.update(zip(todo, train_runs(data, todo, seeds, epochs), strict=True))

    def runs(name: str, lr: float, wd: float, scale: float = 1.0) -> list[dict[str, Any]]:
        key = (name, lr, wd, scale)
        fill([key])
        return cache[key]

    def score(rs: list[dict[str, Any]]) -> float:
        # validation error, mean over seeds; the validation loss only breaks ties (1e-4 of it
        # is below one validation sample's share of the error)
        return 1.0 - mean([r["val_acc"] for r in rs]) + 1e-4 * mean([r["val_loss"] for r in rs])

    fig: dict[str, float] = {
        "seeds": ctx.seeds,
        "training samples": len(data[0][1]),
        "validation samples": len(data[1][1]),
        "test samples": len(data[2][1]),
    }
    flags: dict[str, str] = {}
    samples: dict[str, list[float]] = {}
    grids: dict[str, dict[tuple[float, float], float]] = {}
    chosen: dict[str, tuple[float, float]] = {}
    with one_thread():
        lrs = list(DECAY_LRS)

        def select(name: str) -> tuple[float, float]:
            cells = [(lr, wd) for wd in DECAY_WDS for lr in lrs]
            return min(cells, key=lambda c: score(runs(name, *c)))

        # while either optimizer's best lr sits at an edge of the grid, extend the grid half
        # a decade beyond it, for both (so the budgets stay equal), at most WIDEN times a side
        low = high = 0
        while True:
            # every run of the grid so far, trained together with the others read below (Adam
            # without decay at each lr, the probes), so that the last ones wait for no batch
            fill(
                [(name, lr, wd, 1.0) for name in NAMES for wd in DECAY_WDS for lr in lrs]
                + [("adam", lr, 0.0, 1.0) for lr in lrs]
                + [("adamw", PROBE_LR, 0.0, 1.0)]
                + [(name, PROBE_LR, PROBE_WD, LOSS_SCALE) for name in NAMES]
            )
            best = [select(name)[0] for name in NAMES]
            if lrs[0] in best and low < WIDEN:
                lrs.insert(0, float(f"{lrs[1] / 10:.3g}"))
                low += 1
            elif lrs[-1] in best and high < WIDEN:
                lrs.append(float(f"{lrs[-2] * 10:.3g}"))
                high += 1
            else:
                break
        for name, label in NAMES.items():
            grids[name] = {
                (lr, wd): mean([r["val_acc"] for r in runs(name, lr, wd)])
                for wd in DECAY_WDS
                for lr in lrs
            }
            lr, wd = select(name)
            chosen[name] = (lr, wd)
            edges = [
                f"its best {what} {x:g} is at the edge of the grid {grid[0]:g}..{grid[-1]:g}"
                for what, x, grid in (("lr", lr, lrs), ("weight decay", wd, DECAY_WDS))
                if x in (grid[0], grid[-1])
            ]
            if edges:
                flags[f"{label}: {_TEST}"] = "; ".join(edges)
            sel = runs(name, lr, wd)
            test = [r["test_acc"] for r in sel]
            fig[f"{label}: selected lr"] = lr
            fig[f"{label}: selected weight decay"] = wd
            fig[f"{label}: validation accuracy at its selected lr and decay"] = mean(
                [r["val_acc"] for r in sel]
            )
            fig[f"{label}: {_TEST}"] = mean(test)
            fig[f"{label}: test accuracy, spread over seeds"] = spread(test)
            fig[f"{label}: configurations tried"] = len(grids[name])
            bare = runs("adam", lr, 0.0)
            fig[f"{label}: weight norm at its selected lr and decay"] = mean(
                [float(r["w"].norm()) for r in sel]
            )
            fig[f"{label}: weight norm at the same lr without decay"] = mean(
                [float(r["w"].norm()) for r in bare]
            )
        # no decay at all, chosen the same way: what the decay buys
        plain = min(lrs, key=lambda lr: score(runs("adam", lr, 0.0)))
        fig["Adam without decay: selected lr"] = plain
        fig["Adam without decay: test accuracy"] = mean(
            [r["test_acc"] for r in runs("adam", plain, 0.0)]
        )
        tests = {n: [r["test_acc"] for r in runs(n, *chosen[n])] for n in NAMES}
        samples[ADAMW_GAIN] = [
            100 * (b - a) for a, b in zip(tests["adam"], tests["adamw"], strict=True)
        ]
        fig["seeds where AdamW's test accuracy is above Adam+L2's (fraction)"] = fraction(
            [b > a for a, b in zip(tests["adam"], tests["adamw"], strict=True)]
        )
        # the two decay rules as such, at one cell where AdamW's decay shrinks the weights
        for wd in (0.0, PROBE_WD):
            a, b = runs("adam", PROBE_LR, wd), runs("adamw", PROBE_LR, wd)
            fig[f"lr={PROBE_LR:g}, wd={wd:g}: Adam+L2 vs AdamW weights (rel. distance)"] = mean(
                [_rel(r["w"], s["w"]) for r, s in zip(a, b, strict=True)]
            )
        for name, label in NAMES.items():
            one, big = runs(name, PROBE_LR, PROBE_WD), runs(name, PROBE_LR, PROBE_WD, LOSS_SCALE)
            fig[f"{label} at {_PROBE}: {_SCALED}"] = mean(
                [_rel(s["w"], r["w"]) for r, s in zip(one, big, strict=True)]
            )
            fig[f"{label} at {_PROBE}: weight norm"] = mean([float(r["w"].norm()) for r in one])
        fig[f"lr={PROBE_LR:g}, no decay: weight norm"] = mean(
            [float(r["w"].norm()) for r in runs("adam", PROBE_LR, 0.0)]
        )
    # the algebra: where each rule's decay enters, with the rules themselves
    unit, scaled = _decay_parts(1.0), _decay_parts(LOSS_SCALE)
    for name, label in NAMES.items():
        fig[f"{label}: {_ALGEBRA}"] = _rel(
            torch.from_numpy(scaled[name]), torch.from_numpy(unit[name])
        )
    fig[_APART] = _rel(torch.from_numpy(unit["adam"]), torch.from_numpy(unit["adamw"]))
    path = _decay_plot(ctx, grids, chosen)
    return Measurement(
        fig,
        [("Validation accuracy over lr x weight decay (mean over seeds); o: selected", path)],
        remarks=[
            f"Digits MLP, {epochs} epochs of mini-batches of {DECAY_BATCH}, float32. The "
            "training digits are split once into training and validation (a fifth); every "
            "choice (lr, weight decay) is made on mean validation accuracy, the test digits "
            "are read only at the chosen configuration. Both optimizers get the same "
            f"{len(lrs) * len(DECAY_WDS)} configurations: lrs {', '.join(f'{x:g}' for x in lrs)} "
            f"(the grid {', '.join(f'{x:g}' for x in DECAY_LRS)}, widened alike for both while "
            f"either's best sat at an edge) x decays {', '.join(f'{x:g}' for x in DECAY_WDS)}; "
            "weight decay 0 is never a candidate (there the two are the same optimizer). The "
            "final weights are used, with no checkpoint selection."
        ],
        flags=flags,
        samples=samples,
    )


ADAMW_GAIN = "AdamW's test accuracy minus Adam+L2's (points)"


def _decay_plot(
    ctx: Context,
    grids: dict[str, dict[tuple[float, float], float]],
    chosen: dict[str, tuple[float, float]],
) -> Any:
    plt = pyplot()
    lrs = sorted({lr for g in grids.values() for lr, _ in g})
    f, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    im = None
    for ax, name in zip(axes, NAMES, strict=True):
        z = np.full((len(DECAY_WDS), len(lrs)), np.nan)
        for (lr, wd), v in grids[name].items():
            z[DECAY_WDS.index(wd), lrs.index(lr)] = v
        im = ax.imshow(z, vmin=0.8, vmax=1, cmap="viridis", origin="lower", aspect="auto")
        ax.set_xticks(range(len(lrs)), [f"{x:g}" for x in lrs])
        ax.set_yticks(range(len(DECAY_WDS)), [f"{x:g}" for x in DECAY_WDS])
        ax.set_xlabel("learning rate")
        ax.set_ylabel("weight_decay")
        ax.set_title(
            "Adam(weight_decay) = L2" if name == "adam" else "AdamW (decoupled)", fontsize=9
        )
        for i in range(len(DECAY_WDS)):
            for j in range(len(lrs)):
                if np.isfinite(z[i, j]):
                    mark = " o" if (lrs[j], DECAY_WDS[i]) == chosen[name] else ""
                    color = "white" if z[i, j] < 0.9 else "black"
                    ax.text(j, i, f"{z[i, j]:.3f}{mark}", ha="center", va="center", fontsize=7,
                            color=color)  # fmt: skip
    f.colorbar(im, ax=axes, shrink=0.8, label="validation accuracy")
    return save_figure(ctx, f, "adam-l2-vs-adamw")


CLAIM = Claim(
    key="adam-l2-vs-adamw",
    title="Adam with weight decay is not AdamW",
    quote=(
        "Adam with weight decay is not the same as AdamW. Standard Adam applies weight "
        "decay incorrectly (inside the adaptive step). AdamW fixes this - prefer "
        "torch.optim.AdamW for regularized training."
    ),
    experiment=(
        "The digits MLP trained with Adam(weight_decay=wd) and AdamW(weight_decay=wd), each "
        f"tuned over the same grid of learning rates x weight decays {DECAY_WDS} on a "
        "validation split carved from the training digits, over the seeds of the run; test "
        f"accuracy at each one's selected configuration. At lr {PROBE_LR:g} and decay "
        f"{PROBE_WD:g} the two rules are compared as such: the distance between their trained "
        f"weights, and how much each changes when the loss is scaled {LOSS_SCALE:g}x."
    ),
    statements=(
        Statement(
            "not-the-same",
            "Adam with weight decay is not the same as AdamW.",
            (
                require(
                    "the decay's part of the weights after 10 steps differs between the two "
                    "rules (by more than half its norm)",
                    _APART,
                    ">",
                    0.5,
                ),
                support(
                    f"at {_PROBE} their trained weights are at least 10% (of the norm) apart, "
                    "against the same two without decay",
                    f"{_PROBE}: Adam+L2 vs AdamW weights (rel. distance)",
                    ">=",
                    f"lr={PROBE_LR:g}, wd=0: Adam+L2 vs AdamW weights (rel. distance)",
                    offset=0.1,
                ),
                support(
                    "AdamW's decay has an effect there: its weight norm is under 0.9 of the "
                    "norm without decay",
                    f"AdamW at {_PROBE}: weight norm",
                    "<",
                    f"lr={PROBE_LR:g}, no decay: weight norm",
                    0.9,
                ),
            ),
            exact=True,  # the algebra of the two rules; the trained weights support it
        ),
        Statement(
            "inside-the-step",
            "Standard Adam applies weight decay inside the adaptive step (so its strength "
            "depends on the gradient's scale); AdamW does not.",
            (
                require(
                    f"scaling the loss {LOSS_SCALE:g}x changes Adam+L2's decay part by more "
                    "than half its norm",
                    f"Adam+L2: {_ALGEBRA}",
                    ">",
                    0.5,
                ),
                require(
                    "... and leaves AdamW's unchanged (up to eps's share: 1e-6)",
                    f"AdamW: {_ALGEBRA}",
                    "<=",
                    1e-6,
                ),
                support(
                    f"scaling the loss {LOSS_SCALE:g}x moves Adam+L2's trained weights by at "
                    "least 10% (of the norm) more than AdamW's",
                    f"Adam+L2 at {_PROBE}: {_SCALED}",
                    ">=",
                    f"AdamW at {_PROBE}: {_SCALED}",
                    offset=0.1,
                ),
            ),
            exact=True,  # the algebra of the two rules; the trained weights support it
        ),
        Statement(
            "prefer-adamw",
            "For regularized training AdamW is the better choice.",
            (
                support(
                    "AdamW's test accuracy is at least 1 point above Adam+L2's, each at the lr "
                    "and decay chosen on validation data (mean over seeds)",
                    f"AdamW: {_TEST}",
                    ">=",
                    f"Adam+L2: {_TEST}",
                    offset=0.01,
                ),
                support(
                    "... and above it in every seed",
                    "seeds where AdamW's test accuracy is above Adam+L2's (fraction)",
                    ">=",
                    1.0,
                ),
                require(
                    "the training is regularized: AdamW's chosen decay brings its weight norm "
                    "under 0.9 of the norm without decay at the same lr",
                    "AdamW: weight norm at its selected lr and decay",
                    "<",
                    "AdamW: weight norm at the same lr without decay",
                    0.9,
                ),
                support(
                    "AdamW's chosen configuration beats Adam without any decay",
                    f"AdamW: {_TEST}",
                    ">",
                    "Adam without decay: test accuracy",
                ),
            ),
            effect=EffectSpec(
                ADAMW_GAIN,
                1.0,
                "AdamW's test accuracy minus Adam+L2's, each at the lr and decay chosen on "
                "validation data (a point counts)",
                " pts",
            ),
        ),
    ),
    measure=measure_decay,
)
