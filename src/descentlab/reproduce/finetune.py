"""The seed's pitfall "Adam's 1e-3 is too aggressive for fine-tuning", measured.

Every experiment here that has randomness (initialisation, data, batch order) runs over
several seeds and reports the mean, the spread and, for each comparison, in how many seeds
it goes the stated way. The models are tiny, so they run on one thread: a second one only
adds contention on a shared machine.
Nothing is selected: every lr gets the same fixed budget.
"""

from __future__ import annotations

import copy
import functools

import torch

from .. import torch as dt
from ..lab.workloads import digits_data
from .base import Claim, Context, EffectSpec, Measurement, Statement, support
from .common import one_thread, spread
from .digits import accuracy, mlp
from .seeds import fraction, mean

Tensor = torch.Tensor

FT_LRS = (1e-3, 1e-4, 1e-5)
PRETRAIN_STEPS = 2000
FINETUNE_STEPS = 300
FINETUNE_SAMPLES = 200


def _train(model: torch.nn.Module, x: Tensor, y: Tensor, lr: float, steps: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    opt = dt.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (32,), generator=gen)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()


def _flip(x: Tensor) -> Tensor:
    """The related task: the same digits mirrored left to right."""
    return x.reshape(-1, 8, 8).flip(-1).reshape(-1, 64)


def _ft(lr: float, what: str) -> str:
    return f"lr={lr:g}: {what}"


@functools.lru_cache(maxsize=64)
def _seed_run(seed: int) -> tuple[tuple[float, float], dict[float, tuple[float, float]]]:
    """One seed: the pre-trained model's (original, mirrored) test accuracies, and each
    fine-tuning lr's. A seed's result depends on the seed alone, so seeds added to an
    unresolved statement reuse the ones already run."""
    xtr, ytr, xte, yte = (torch.from_numpy(a) for a in digits_data())
    xtr, xte = xtr.float(), xte.float()
    ytr, yte = ytr.long(), yte.long()
    torch.manual_seed(seed)
    base = mlp()
    _train(base, xtr, ytr, 1e-3, PRETRAIN_STEPS, seed)
    pretrained = (accuracy(base, xte, yte), accuracy(base, _flip(xte), yte))
    gen = torch.Generator().manual_seed(seed)
    small = torch.randperm(len(xtr), generator=gen)[:FINETUNE_SAMPLES]
    finetuned = {}
    for lr in FT_LRS:
        model = copy.deepcopy(base)
        _train(model, _flip(xtr[small]), ytr[small], lr, FINETUNE_STEPS, seed + 100)
        finetuned[lr] = (accuracy(model, xte, yte), accuracy(model, _flip(xte), yte))
    return pretrained, finetuned


def measure_finetune(ctx: Context) -> Measurement:
    seeds = max(ctx.seeds, 3)  # a few seconds each: enough seeds for a spread even when quick
    before: list[tuple[float, float]] = []
    after: dict[float, list[tuple[float, float]]] = {lr: [] for lr in FT_LRS}
    with one_thread():
        for seed in range(seeds):
            pretrained, finetuned = _seed_run(seed)
            before.append(pretrained)
            for lr in FT_LRS:
                after[lr].append(finetuned[lr])
    orig0 = [b[0] for b in before]
    new0 = [b[1] for b in before]
    fig: dict[str, float] = {
        "seeds": seeds,
        "pre-trained: original-task accuracy": mean(orig0),
        "pre-trained: mirrored-task accuracy": mean(new0),
    }
    lost: dict[float, list[float]] = {}
    new: dict[float, list[float]] = {}
    rows = []
    for lr in FT_LRS:
        orig = [a[0] for a in after[lr]]
        new[lr] = [a[1] for a in after[lr]]
        lost[lr] = [b - a for b, a in zip(orig0, orig, strict=True)]
        fig[_ft(lr, "original-task accuracy after")] = mean(orig)
        fig[_ft(lr, "original-task accuracy lost")] = mean(lost[lr])
        fig[_ft(lr, "original-task accuracy lost, spread over seeds")] = spread(lost[lr])
        fig[_ft(lr, "mirrored-task accuracy after")] = mean(new[lr])
        fig[_ft(lr, "mirrored-task accuracy after, spread over seeds")] = spread(new[lr])
        rows.append(
            [
                f"{lr:g}",
                f"{mean(orig):.3f} ± {spread(orig):.3f}",
                f"{mean(new[lr]):.3f} ± {spread(new[lr]):.3f}",
            ]
        )
    samples = {
        TOO_AGGRESSIVE: [100 * (a - b) for a, b in zip(lost[1e-3], lost[1e-4], strict=True)],
        **{
            _suffices_effect(lr): [
                min(100 * (a - b) - 10, 100 * (a - c) + 2)
                for a, b, c in zip(new[lr], new0, new[1e-3], strict=True)
            ]
            for lr in (1e-4, 1e-5)
        },
    }
    fig["seeds where 1e-3 loses more of the original task than 1e-4 (fraction)"] = fraction(
        [a > b for a, b in zip(lost[1e-3], lost[1e-4], strict=True)]
    )
    for lr, tag in ((1e-4, "1e-4"), (1e-5, "1e-5")):
        fig[f"seeds where {tag} is within 2 points of 1e-3 on the mirrored task (fraction)"] = (
            fraction([a >= b - 0.02 for a, b in zip(new[lr], new[1e-3], strict=True)])
        )
        fig[f"seeds where {tag} gains 10 points on the mirrored task (fraction)"] = fraction(
            [a >= b + 0.10 for a, b in zip(new[lr], new0, strict=True)]
        )
    return Measurement(
        fig,
        table=(["fine-tuning lr", "original task acc", "mirrored task acc"], rows),
        remarks=[
            f"Pre-train the digits MLP with Adam at 1e-3 ({PRETRAIN_STEPS} steps of 32), then "
            f"fine-tune all weights for {FINETUNE_STEPS} steps on {FINETUNE_SAMPLES} mirrored "
            "training digits with Adam at 1e-3, 1e-4 or 1e-5, over "
            f"{seeds} seeds (initialisation, batches, the fine-tuning subset); accuracies on the "
            "held-out digits, plain and mirrored, after the same fixed budget for every lr "
            f"({FINETUNE_STEPS} steps, {FINETUNE_STEPS * 32 // FINETUNE_SAMPLES} epochs of the "
            "subset): nothing is selected. "
            "The seed's advice is about large pre-trained models; this is a small one, so read "
            "the verdicts as what happens at this scale."
        ],
        samples=samples,
    )


TOO_AGGRESSIVE = "original-task accuracy lost at 1e-3 minus at 1e-4 (points)"


def _suffices_effect(lr: float) -> str:
    return f"lr={lr:g}: the smaller margin on the new task (points)"


def _suffices(lr: float) -> Statement:
    tag = f"{lr:.0e}".replace("e-0", "e-")
    return Statement(
        f"{tag}-suffices",
        f"{tag} is enough to learn the new task.",
        (
            support(
                f"at {tag} the mirrored-task accuracy rises at least 10 points above the "
                "pre-trained model's (mean over seeds)",
                _ft(lr, "mirrored-task accuracy after"),
                ">=",
                "pre-trained: mirrored-task accuracy",
                offset=0.10,
            ),
            support(
                f"{tag} learns the new task to within 2 points of 1e-3 (mean over seeds)",
                _ft(lr, "mirrored-task accuracy after"),
                ">=",
                _ft(1e-3, "mirrored-task accuracy after"),
                offset=-0.02,
            ),
            support(
                "... within 2 points in every seed",
                f"seeds where {tag} is within 2 points of 1e-3 on the mirrored task (fraction)",
                ">=",
                1.0,
            ),
        ),
        effect=EffectSpec(
            _suffices_effect(lr),
            0.0,
            f"per seed, the smaller of two margins on the mirrored task at {tag}: its gain "
            "over the pre-trained model minus 10 points, and its accuracy minus 1e-3's plus 2 "
            "points (both must be positive)",
            " pts",
        ),
    )


CLAIM = Claim(
    key="finetune-lr",
    title="Adam's 1e-3 is too aggressive for fine-tuning",
    quote=(
        "Using Adam's default learning rate for fine-tuning large models. 1e-3 is too "
        "aggressive for fine-tuning - use 1e-5 or 1e-4."
    ),
    experiment=(
        f"Pre-train an MLP on digits, fine-tune it for {FINETUNE_STEPS} steps on a related "
        f"task (mirrored digits, {FINETUNE_SAMPLES} samples) at Adam lr 1e-3 / 1e-4 / 1e-5, "
        "over several seeds; measure on held-out digits what the original task loses and what "
        "the new task gains."
    ),
    statements=(
        Statement(
            "too-aggressive",
            "Adam's default lr 1e-3 is too aggressive for fine-tuning (it destroys what "
            "pre-training learned).",
            (
                support(
                    "at 1e-3 the original task loses at least 5 points more accuracy than at "
                    "1e-4 (mean over seeds)",
                    _ft(1e-3, "original-task accuracy lost"),
                    ">=",
                    _ft(1e-4, "original-task accuracy lost"),
                    offset=0.05,
                ),
                support(
                    "... and loses more in every seed",
                    "seeds where 1e-3 loses more of the original task than 1e-4 (fraction)",
                    ">=",
                    1.0,
                ),
                support(
                    "at 1e-3 the new task ends below 1e-4's",
                    _ft(1e-3, "mirrored-task accuracy after"),
                    "<",
                    _ft(1e-4, "mirrored-task accuracy after"),
                ),
            ),
            effect=EffectSpec(
                TOO_AGGRESSIVE,
                5.0,
                "original-task accuracy lost at 1e-3 minus lost at 1e-4 (5 points count)",
                " pts",
            ),
        ),
        _suffices(1e-4),
        _suffices(1e-5),
    ),
    measure=measure_finetune,
)
