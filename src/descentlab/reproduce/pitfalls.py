"""The seed's common pitfalls, measured.

Every experiment here that has randomness (initialisation, data, batch order) runs over
several seeds and reports the mean, the spread and, for each comparison, in how many seeds
it goes the stated way; nothing is selected on a test set (the one experiment that selects
hyperparameters selects them on a validation split carved from the training data). The
models are tiny, so they run on one thread: a second one only adds contention on a shared
machine.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .. import rules
from .. import torch as dt
from ..lab.batched import _ACTIVATIONS, _linear_layers
from ..lab.workloads import _digits_data
from .base import Claim, Condition, Context, Measurement, Statement, require, support
from .common import one_thread, pyplot, save_figure, spread

Tensor = torch.Tensor


def _mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))


def _acc(model: torch.nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(-1) == y).float().mean())


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values))


def _fraction(flags: Sequence[bool]) -> float:
    return float(np.mean(flags))


# ------------------------------------------------------------------ fine-tuning lr

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


def measure_finetune(ctx: Context) -> Measurement:
    xtr, ytr, xte, yte = (torch.from_numpy(a) for a in _digits_data())
    xtr, xte = xtr.float(), xte.float()
    ytr, yte = ytr.long(), yte.long()
    seeds = max(ctx.seeds, 3)  # a few seconds each: enough seeds for a spread even when quick
    before: list[tuple[float, float]] = []
    after: dict[float, list[tuple[float, float]]] = {lr: [] for lr in FT_LRS}
    with one_thread():
        for seed in range(seeds):
            torch.manual_seed(seed)
            base = _mlp()
            _train(base, xtr, ytr, 1e-3, PRETRAIN_STEPS, seed)
            before.append((_acc(base, xte, yte), _acc(base, _flip(xte), yte)))
            gen = torch.Generator().manual_seed(seed)
            small = torch.randperm(len(xtr), generator=gen)[:FINETUNE_SAMPLES]
            for lr in FT_LRS:
                model = copy.deepcopy(base)
                _train(model, _flip(xtr[small]), ytr[small], lr, FINETUNE_STEPS, seed + 100)
                after[lr].append((_acc(model, xte, yte), _acc(model, _flip(xte), yte)))
    orig0 = [b[0] for b in before]
    new0 = [b[1] for b in before]
    fig: dict[str, float] = {
        "seeds": seeds,
        "pre-trained: original-task accuracy": _mean(orig0),
        "pre-trained: mirrored-task accuracy": _mean(new0),
    }
    lost: dict[float, list[float]] = {}
    new: dict[float, list[float]] = {}
    rows = []
    for lr in FT_LRS:
        orig = [a[0] for a in after[lr]]
        new[lr] = [a[1] for a in after[lr]]
        lost[lr] = [b - a for b, a in zip(orig0, orig, strict=True)]
        fig[_ft(lr, "original-task accuracy after")] = _mean(orig)
        fig[_ft(lr, "original-task accuracy lost")] = _mean(lost[lr])
        fig[_ft(lr, "original-task accuracy lost, spread over seeds")] = spread(lost[lr])
        fig[_ft(lr, "mirrored-task accuracy after")] = _mean(new[lr])
        fig[_ft(lr, "mirrored-task accuracy after, spread over seeds")] = spread(new[lr])
        rows.append(
            [
                f"{lr:g}",
                f"{_mean(orig):.3f} ± {spread(orig):.3f}",
                f"{_mean(new[lr]):.3f} ± {spread(new[lr]):.3f}",
            ]
        )
    fig["seeds where 1e-3 loses more of the original task than 1e-4 (fraction)"] = _fraction(
        [a > b for a, b in zip(lost[1e-3], lost[1e-4], strict=True)]
    )
    for lr, tag in ((1e-4, "1e-4"), (1e-5, "1e-5")):
        fig[f"seeds where {tag} is within 2 points of 1e-3 on the mirrored task (fraction)"] = (
            _fraction([a >= b - 0.02 for a, b in zip(new[lr], new[1e-3], strict=True)])
        )
        fig[f"seeds where {tag} gains 10 points on the mirrored task (fraction)"] = _fraction(
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
    )


def _suffices(lr: float) -> Statement:
    tag = f"{lr:.0e}".replace("e-0", "e-")
    return Statement(
        f"{tag}-suffices",
        f"{tag} is enough to learn the new task.",
        (
            require(
                f"at {tag} the mirrored-task accuracy rises at least 10 points above the "
                "pre-trained model's (mean over seeds)",
                _ft(lr, "mirrored-task accuracy after"),
                ">=",
                "pre-trained: mirrored-task accuracy",
                offset=0.10,
            ),
            require(
                f"{tag} learns the new task to within 2 points of 1e-3 (mean over seeds)",
                _ft(lr, "mirrored-task accuracy after"),
                ">=",
                _ft(1e-3, "mirrored-task accuracy after"),
                offset=-0.02,
            ),
            require(
                "... within 2 points in every seed",
                f"seeds where {tag} is within 2 points of 1e-3 on the mirrored task (fraction)",
                ">=",
                1.0,
            ),
        ),
    )


FINETUNE = Claim(
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
                require(
                    "at 1e-3 the original task loses at least 5 points more accuracy than at "
                    "1e-4 (mean over seeds)",
                    _ft(1e-3, "original-task accuracy lost"),
                    ">=",
                    _ft(1e-4, "original-task accuracy lost"),
                    offset=0.05,
                ),
                require(
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
        ),
        _suffices(1e-4),
        _suffices(1e-5),
    ),
    measure=measure_finetune,
)

# ------------------------------------------------------------------ forgetting zero_grad

OPTS: tuple[tuple[str, Callable[[Any], torch.optim.Optimizer]], ...] = (
    ("SGD(0.01, momentum=0.9)", lambda p: dt.SGD(p, lr=0.01, momentum=0.9)),
    ("Adam(1e-3)", lambda p: dt.Adam(p, lr=1e-3)),
)
ZG_SEEDS = 10  # at least: a full-batch linear model, ten seeds cost milliseconds


def _seed_loop(
    make_opt: Callable[[Any], torch.optim.Optimizer], zero_grad: bool, seed: int, epochs: int = 50
) -> tuple[float, float, float]:
    """The seed's training loop on seed ``seed``'s data and initialisation.

    Returns the final full-batch loss (inf if it diverged), the mean over steps of
    |applied gradient - current gradient| / |current gradient|, and the largest relative
    gap between the applied gradient and the sum of every gradient computed so far.
    """
    torch.manual_seed(seed)
    model = torch.nn.Linear(10, 1)
    x, y = torch.randn(100, 10), torch.randn(100, 1)
    opt = make_opt(model.parameters())
    loss_fn = torch.nn.MSELoss()
    params = list(model.parameters())
    total = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    deviation, gap = [], 0.0
    for _ in range(epochs):
        if zero_grad:
            opt.zero_grad()
        loss = loss_fn(model(x), y)
        current = torch.autograd.grad(loss, params, retain_graph=True)
        loss.backward()
        applied = torch.cat([p.grad.reshape(-1) for p in params if p.grad is not None])
        now = torch.cat([g.reshape(-1) for g in current])
        for t, g in zip(total, current, strict=True):
            t += g.double()
        summed = torch.cat([t.reshape(-1) for t in total])
        deviation.append(float((applied - now).norm() / now.norm()))
        gap = max(gap, float((applied.double() - summed).norm() / summed.norm()))
        opt.step()
    with torch.no_grad():
        final = float(loss_fn(model(x), y))
    return (final if math.isfinite(final) else math.inf), _mean(deviation), gap


def measure_zero_grad(ctx: Context) -> Measurement:
    seeds = max(ctx.seeds, ZG_SEEDS)
    fig: dict[str, float] = {"seeds": seeds}
    with one_thread():
        for name, make in OPTS:
            finals = {}
            for zero in (True, False):
                runs = [_seed_loop(make, zero, seed) for seed in range(seeds)]
                tag = f"{name} {'with' if zero else 'without'} zero_grad"
                finals[zero] = [r[0] for r in runs]
                fig[f"{tag}: final loss"] = _mean(finals[zero])
                ok = [v for v in finals[zero] if math.isfinite(v)]
                fig[f"{tag}: final loss, spread over finite seeds"] = spread(ok)
                fig[f"{tag}: seeds diverged"] = len(runs) - len(ok)
                fig[f"{tag}: applied vs current gradient (rel. deviation)"] = _mean(
                    [r[1] for r in runs]
                )
                if not zero:
                    fig[f"{tag}: applied vs sum of all gradients so far (rel.)"] = max(
                        r[2] for r in runs
                    )
            fig[f"{name}: seeds where forgetting zero_grad ends higher (fraction)"] = _fraction(
                [b > a for a, b in zip(finals[True], finals[False], strict=True)]
            )
    return Measurement(
        fig,
        remarks=[
            f"The seed's own loop (nn.Linear(10, 1) on random data, 50 full-batch epochs) with "
            f"its own optimizers, once as written and once without opt.zero_grad(), over "
            f"{seeds} seeds of data and initialisation. At each step the gradient the "
            "optimizer reads (.grad) is compared with the gradient of the current loss alone "
            "and with the sum of all gradients so far. A run that diverges ends at an infinite "
            "loss: the worst outcome."
        ],
    )


def _accumulates(name: str) -> tuple[Any, ...]:
    return (
        require(
            f"with {name}, the gradient a step reads is the sum of all gradients so far (to "
            "1e-4, relative)",
            f"{name} without zero_grad: applied vs sum of all gradients so far (rel.)",
            "<=",
            1e-4,
        ),
        require(
            f"with {name}, it deviates from the current gradient by at least 50% more than "
            "with zero_grad (mean over steps and seeds)",
            f"{name} without zero_grad: applied vs current gradient (rel. deviation)",
            ">=",
            f"{name} with zero_grad: applied vs current gradient (rel. deviation)",
            offset=0.5,
        ),
    )


def _worse(name: str) -> tuple[Any, ...]:
    return (
        require(
            f"with {name}, forgetting zero_grad ends at least 10% higher (mean over seeds)",
            f"{name} without zero_grad: final loss",
            ">=",
            f"{name} with zero_grad: final loss",
            1.1,
        ),
        require(
            f"with {name}, ... and higher in every seed",
            f"{name}: seeds where forgetting zero_grad ends higher (fraction)",
            ">=",
            1.0,
        ),
    )


ZERO_GRAD = Claim(
    key="zero-grad",
    title="Forgetting zero_grad() corrupts the updates",
    quote=(
        "Forgetting optimizer.zero_grad(). In PyTorch, gradients accumulate by default. "
        "Call zero_grad() before each backward pass, or gradients from previous batches "
        "corrupt the update."
    ),
    experiment=(
        f"The seed's training loop with SGD(lr=0.01, momentum=0.9) and Adam(lr=1e-3), with "
        f"and without zero_grad(), over {ZG_SEEDS} seeds: the final loss, and at every step "
        "how far the gradient the optimizer reads is from the current gradient and from the "
        "sum of all gradients so far."
    ),
    statements=(
        Statement(
            "accumulate",
            "Without zero_grad() gradients accumulate: the update no longer follows the "
            "current gradient.",
            tuple(c for name, _ in OPTS for c in _accumulates(name)),
        ),
        Statement(
            "corrupts",
            "... and that corrupts training: it ends worse.",
            tuple(c for name, _ in OPTS for c in _worse(name)),
            Condition(
                "for SGD with momentum (whose step grows with the accumulated gradient), not "
                "for Adam (which divides its scale out)",
                inside=_worse(OPTS[0][0]),
                outside=_worse(OPTS[1][0]),
            ),
        ),
    ),
    measure=measure_zero_grad,
)

# ------------------------------------------------------------------ stale momentum

BETA, LR0, CUT_TO, CUT_AT, AFTER = 0.9, 0.05, 0.1, 8, 5
FORMS = (
    "lr inside the buffer (Keras SGD)",
    "heavy-ball, lr outside (torch, TF1)",
    "EMA, lr outside (the seed)",
)


def _form(form: str) -> tuple[rules.Rule, float, bool]:
    """The rule, its lr scale (equal steps before the cut), and whether its buffer holds
    lr-scaled steps (so that the cut reaches the velocity only through new gradients)."""
    if form == FORMS[0]:
        # m = beta * m - lr * g; w += m: the same pieces, the lr step placed first
        return rules.Rule("sgd-lr-inside", (rules.ScaleByLR(), rules.HeavyBall())), 1.0, True
    if form == FORMS[1]:
        return rules.sgd(momentum=True), 1.0, False
    return rules.ema_momentum(), 1.0 / (1 - BETA), False  # the seed's EMA at the same steps


def _around_cut(form: str, at_once: bool, steps: int = 20) -> list[float]:
    """Step sizes on f = 0.5 w^2 from w = 10 when the lr drops 10x after step ``CUT_AT``.

    ``at_once``: at the cut, scale the velocity (the buffer, in units of a step) by the cut
    too, which is what the new lr alone would give; a form whose lr multiplies the buffer at
    use already does this, so there the two runs coincide."""
    rule, scale, lr_inside = _form(form)
    w = np.array([10.0])
    state = rule.init(w)
    sizes = []
    for t in range(1, steps + 1):
        if t == CUT_AT + 1 and at_once and lr_inside:
            state = {**state, "momentum_buffer": state["momentum_buffer"] * CUT_TO}
        step_lr = LR0 * scale * (CUT_TO if t > CUT_AT else 1.0)
        new, state = rule.step(w, w.copy(), state, step=t, lr=step_lr, momentum=BETA, dampening=0.0)
        sizes.append(float(abs(new - w)[0]))
        w = new
    return sizes


def _moved(form: str, at_once: bool) -> str:
    what = "as the new lr alone gives" if at_once else "as kept"
    return f"{form}: distance moved in the {AFTER} steps after the cut, {what}"


def measure_stale(ctx: Context) -> Measurement:
    fig: dict[str, float] = {"lr cut": CUT_TO, "cut after step": CUT_AT}
    plt = pyplot()
    f, ax = plt.subplots(figsize=(6, 3.6))
    for i, form in enumerate(FORMS):
        kept, clean = _around_cut(form, False), _around_cut(form, True)
        fig[_moved(form, False)] = sum(kept[CUT_AT : CUT_AT + AFTER])
        fig[_moved(form, True)] = sum(clean[CUT_AT : CUT_AT + AFTER])
        fig[f"{form}: step after cut / step before"] = kept[CUT_AT] / kept[CUT_AT - 1]
        steps = range(1, len(kept) + 1)
        ax.semilogy(steps, kept, "o-", color=f"C{i}", label=form, markersize=3)
        ax.semilogy(steps, clean, ":", color=f"C{i}", linewidth=1)
    ax.axvline(CUT_AT + 0.5, color="grey", linestyle=":")
    ax.set_xlabel(f"step (lr cut 10x after step {CUT_AT})")
    ax.set_ylabel("|w_t - w_{t-1}|")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    path = save_figure(ctx, f, "stale-momentum")
    return Measurement(
        fig,
        [
            (
                "Step sizes around a 10x lr cut, three momentum conventions (dotted: the "
                "cut applied to the velocity at once)",
                path,
            )
        ],
        remarks=[
            "Before the cut the three forms take identical steps. Where the lr multiplies the "
            "buffer at use (torch, TF1's MomentumOptimizer, the seed's EMA) the buffer holds "
            "gradients and the cut applies at once; where the buffer holds lr-scaled steps "
            "(Keras SGD, Sutskever et al.'s form) the old lr keeps coming until the buffer "
            "decays. The problem is deterministic: there is nothing to average over seeds."
        ],
    )


def _carries(form: str, key: str) -> Statement:
    return Statement(
        f"overshoot-{key}",
        f"With {form}, momentum carries stale velocity across an lr cut: for a few steps "
        "after it, the steps stay larger than the new lr gives.",
        (
            require(
                f"in the {AFTER} steps after the cut it moves at least twice as far as with "
                "the cut applied to the velocity at once",
                _moved(form, False),
                ">=",
                _moved(form, True),
                2.0,
            ),
            support(
                "the first step after the cut is over half the last one before",
                f"{form}: step after cut / step before",
                ">",
                0.5,
            ),
        ),
    )


STALE = Claim(
    key="stale-momentum",
    title="Momentum carries stale velocity across an lr cut",
    quote=(
        "Momentum carries stale velocity across learning rate changes. If you cut the LR "
        "mid-training, the accumulated momentum can overshoot for a few steps."
    ),
    experiment=(
        f"0.5 w^2 from w = 10, momentum {BETA}, lr {LR0} cut to {LR0 * CUT_TO:g} after step "
        f"{CUT_AT}, in three conventions (all built from descentlab's transforms): the "
        f"distance moved in the {AFTER} steps after the cut, against the same run with the "
        "cut applied to the velocity at once (what the new lr alone gives)."
    ),
    statements=tuple(
        _carries(form, key) for form, key in zip(FORMS, ("keras", "torch", "ema"), strict=True)
    ),
    measure=measure_stale,
)

# ------------------------------------------------------------------ Adam + L2 vs AdamW

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
_TEST = "test accuracy at its selected lr and decay"
_PROBE = f"lr={PROBE_LR:g}, wd={PROBE_WD:g}"
_SCALED = f"weights change when the loss is scaled {LOSS_SCALE:g}x (rel.)"

Split = tuple[Tensor, Tensor]


def _decay_data() -> tuple[Split, Split, Split]:
    """Training, validation (a fifth of the training digits, fixed) and test digits."""
    xtr, ytr, xte, yte = _digits_data()
    order = np.random.default_rng(1).permutation(len(xtr))
    val, train = order[: len(xtr) // 5], order[len(xtr) // 5 :]

    def pair(x: np.ndarray, y: np.ndarray) -> Split:
        return torch.from_numpy(x).float(), torch.from_numpy(y).long()

    return pair(xtr[train], ytr[train]), pair(xtr[val], ytr[val]), pair(xte, yte)


def _stacked_forward(template: torch.nn.Module, flat: Tensor, x: Tensor) -> Tensor:
    """``template``'s forward on every seed at once: ``x`` is [S, B, in] and row s of ``flat``
    [S, n] is seed s's parameters, flattened in ``template.parameters()`` order.

    The layers are read as the lab's batched runs read them (``lab.batched._linear_layers``,
    so it follows ``_mlp()`` if that changes): a Linear becomes one batched matmul on views
    of ``flat`` (seed s reads only row s), an activation is applied element-wise. The views
    come from one ``split``, whose backward writes the gradient once (slicing each view would
    fill a zero [S, n] gradient per parameter).
    """
    names, shapes = zip(*((n, p.shape) for n, p in template.named_parameters()), strict=True)
    layers = _linear_layers(template, list(names))
    if layers is None:
        raise TypeError(f"cannot stack {type(template).__name__} over seeds")
    pieces = flat.split([s.numel() for s in shapes], dim=1)
    views = [v.unflatten(1, shape) for v, shape in zip(pieces, shapes, strict=True)]
    for layer, w, b in layers:
        if w < 0:
            x = _ACTIVATIONS[type(layer)](x)
        elif b is None:
            x = torch.bmm(x, views[w].transpose(1, 2))
        else:
            x = torch.baddbmm(views[b].unsqueeze(1), x, views[w].transpose(1, 2))
    return x


Config = tuple[str, float, float, float]  # optimizer name, lr, weight decay, loss scale


def _decay_train(
    x: Tensor,
    y: Tensor,
    configs: Sequence[Config],
    seeds: Sequence[int],
    epochs: int = DECAY_EPOCHS,
) -> list[list[torch.nn.Module]]:
    """Train ``_mlp()`` for every configuration and seed together: one model per seed, a list
    of them per configuration.

    Why stacked: the model is so small that a one-seed step is mostly Python and dispatch
    overhead, so many models in one step cost little more than one. Each configuration's
    seeds are one [S, n] tensor (row s: seed s's weights flattened in ``parameters()``
    order) with its own lr and decay; the forward runs all rows of all configurations at once.
    What stays per seed, exactly as a one-seed run: the initialisation
    (``torch.manual_seed(seed)`` then ``_mlp()``) and the batch order (its own generator, the
    same in every configuration). The loss is the sum over rows of each row's scaled mean
    cross-entropy, so each row of the gradient is that run's own gradient (rows never mix: a
    NaN in a diverged run stays in its row). Adam and AdamW are elementwise with scalar
    hyperparameters, so each row's update is the one-seed update, weight decay included;
    only the batched matmul may round differently. ``engine="reference"`` is the engine a
    one-seed run gets (``"auto"`` would compile a stack of many seeds).
    """
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        models.append(_mlp())
    with torch.no_grad():
        init = torch.stack([torch.nn.utils.parameters_to_vector(m.parameters()) for m in models])
    flats = [init.clone().requires_grad_() for _ in configs]
    # one optimizer per rule, a param group per configuration: each group is stepped on its
    # own with its own scalar lr and decay, as a one-group optimizer would (fewer calls)
    opts = []
    for cls, decoupled in ((dt.Adam, False), (dt.AdamW, True)):
        groups = [
            {"params": [flat], "lr": lr, "weight_decay": wd}
            for flat, (name, lr, wd, _) in zip(flats, configs, strict=True)
            if (name == "adamw") == decoupled
        ]
        if groups:
            opts.append(cls(groups, engine="reference"))
    scales = torch.tensor([scale for *_, scale in configs]).repeat_interleave(len(seeds))
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    for _ in range(epochs):
        order = torch.stack([torch.randperm(len(x), generator=g) for g in gens])
        for idx in order.split(DECAY_BATCH, dim=1):  # [S, B]: seed s's batch in row s
            idx = idx.repeat(len(configs), 1)  # [C * S, B], configuration-major
            for opt in opts:
                opt.zero_grad()
            out = _stacked_forward(models[0], torch.cat(flats), x[idx])
            losses = torch.nn.functional.cross_entropy(
                out.flatten(0, 1), y[idx].flatten(), reduction="none"
            )
            (scales * losses.view(idx.shape).mean(1)).sum().backward()
            for opt in opts:
                opt.step()
    trained = []
    with torch.no_grad():
        for flat in flats:
            trained.append([copy.deepcopy(m) for m in models])
            for model, row in zip(trained[-1], flat, strict=True):
                torch.nn.utils.vector_to_parameters(row, model.parameters())
    return trained


def _decay_eval(model: torch.nn.Module, data: tuple[Split, Split, Split]) -> dict[str, Any]:
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
        "test_acc": _acc(model, xt, yt) if finite else 0.0,
        "w": w,
    }


def _decay_runs(
    data: tuple[Split, Split, Split],
    configs: Sequence[Config],
    seeds: Sequence[int],
    epochs: int = DECAY_EPOCHS,
) -> list[list[dict[str, Any]]]:
    """Every seed's figures (in the order of ``seeds``) for each configuration."""
    (x, y), _, _ = data
    trained = _decay_train(x, y, configs, seeds, epochs)
    return [[_decay_eval(model, data) for model in models] for models in trained]


def _rel(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm())


def measure_decay(ctx: Context) -> Measurement:
    data = _decay_data()
    seeds = range(ctx.seeds)
    cache: dict[Config, list[dict[str, Any]]] = {}

    def fill(keys: Sequence[Config]) -> None:
        # the runs not yet cached, trained together (see _decay_train)
        todo = [k for k in dict.fromkeys(keys) if k not in cache]
        if todo:
            cache.update(zip(todo, _decay_runs(data, todo, seeds), strict=True))

    def runs(name: str, lr: float, wd: float, scale: float = 1.0) -> list[dict[str, Any]]:
        key = (name, lr, wd, scale)
        fill([key])
        return cache[key]

    def score(rs: list[dict[str, Any]]) -> float:
        # validation error, mean over seeds; the validation loss only breaks ties (1e-4 of it
        # is below one validation sample's share of the error)
        return 1.0 - _mean([r["val_acc"] for r in rs]) + 1e-4 * _mean([r["val_loss"] for r in rs])

    fig: dict[str, float] = {
        "seeds": ctx.seeds,
        "training samples": len(data[0][1]),
        "validation samples": len(data[1][1]),
        "test samples": len(data[2][1]),
    }
    flags: dict[str, str] = {}
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
                (lr, wd): _mean([r["val_acc"] for r in runs(name, lr, wd)])
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
            fig[f"{label}: validation accuracy at its selected lr and decay"] = _mean(
                [r["val_acc"] for r in sel]
            )
            fig[f"{label}: {_TEST}"] = _mean(test)
            fig[f"{label}: test accuracy, spread over seeds"] = spread(test)
            fig[f"{label}: configurations tried"] = len(grids[name])
            bare = runs("adam", lr, 0.0)
            fig[f"{label}: weight norm at its selected lr and decay"] = _mean(
                [float(r["w"].norm()) for r in sel]
            )
            fig[f"{label}: weight norm at the same lr without decay"] = _mean(
                [float(r["w"].norm()) for r in bare]
            )
        # no decay at all, chosen the same way: what the decay buys
        plain = min(lrs, key=lambda lr: score(runs("adam", lr, 0.0)))
        fig["Adam without decay: selected lr"] = plain
        fig["Adam without decay: test accuracy"] = _mean(
            [r["test_acc"] for r in runs("adam", plain, 0.0)]
        )
        tests = {n: [r["test_acc"] for r in runs(n, *chosen[n])] for n in NAMES}
        fig["seeds where AdamW's test accuracy is above Adam+L2's (fraction)"] = _fraction(
            [b > a for a, b in zip(tests["adam"], tests["adamw"], strict=True)]
        )
        # the two decay rules as such, at one cell where AdamW's decay shrinks the weights
        for wd in (0.0, PROBE_WD):
            a, b = runs("adam", PROBE_LR, wd), runs("adamw", PROBE_LR, wd)
            fig[f"lr={PROBE_LR:g}, wd={wd:g}: Adam+L2 vs AdamW weights (rel. distance)"] = _mean(
                [_rel(r["w"], s["w"]) for r, s in zip(a, b, strict=True)]
            )
        for name, label in NAMES.items():
            one, big = runs(name, PROBE_LR, PROBE_WD), runs(name, PROBE_LR, PROBE_WD, LOSS_SCALE)
            fig[f"{label} at {_PROBE}: {_SCALED}"] = _mean(
                [_rel(s["w"], r["w"]) for r, s in zip(one, big, strict=True)]
            )
            fig[f"{label} at {_PROBE}: weight norm"] = _mean([float(r["w"].norm()) for r in one])
        fig[f"lr={PROBE_LR:g}, no decay: weight norm"] = _mean(
            [float(r["w"].norm()) for r in runs("adam", PROBE_LR, 0.0)]
        )
    path = _decay_plot(ctx, grids, chosen)
    return Measurement(
        fig,
        [("Validation accuracy over lr x weight decay (mean over seeds); o: selected", path)],
        remarks=[
            f"Digits MLP, {DECAY_EPOCHS} epochs of mini-batches of {DECAY_BATCH}, float32. The "
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
    )


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


DECAY = Claim(
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
        ),
        Statement(
            "inside-the-step",
            "Standard Adam applies weight decay inside the adaptive step (so its strength "
            "depends on the gradient's scale); AdamW does not.",
            (
                require(
                    f"scaling the loss {LOSS_SCALE:g}x moves Adam+L2's trained weights by at "
                    "least 10% (of the norm) more than AdamW's",
                    f"Adam+L2 at {_PROBE}: {_SCALED}",
                    ">=",
                    f"AdamW at {_PROBE}: {_SCALED}",
                    offset=0.1,
                ),
            ),
        ),
        Statement(
            "prefer-adamw",
            "For regularized training AdamW is the better choice.",
            (
                require(
                    "AdamW's test accuracy is at least 1 point above Adam+L2's, each at the lr "
                    "and decay chosen on validation data (mean over seeds)",
                    f"AdamW: {_TEST}",
                    ">=",
                    f"Adam+L2: {_TEST}",
                    offset=0.01,
                ),
                require(
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
        ),
    ),
    measure=measure_decay,
)
