"""The seed's common pitfalls, measured."""

from __future__ import annotations

import numpy as np
import torch

from .. import rules
from .. import torch as dt
from ..lab.workloads import _digits_data
from .base import Claim, Context, Criterion, Measurement
from .common import lab_runs, metric, pyplot, save_figure

# ------------------------------------------------------------------ fine-tuning lr


def _mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))


def _acc(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(-1) == y).float().mean())


def _train(model, x, y, lr, steps, seed):
    gen = torch.Generator().manual_seed(seed)
    opt = dt.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (32,), generator=gen)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()


def measure_finetune(ctx: Context) -> Measurement:
    import copy

    xtr, ytr, xte, yte = (torch.from_numpy(a) for a in _digits_data())
    xtr, xte = xtr.float(), xte.float()
    ytr, yte = ytr.long(), yte.long()

    def flip(x: torch.Tensor) -> torch.Tensor:  # the related task: mirrored digits
        return x.reshape(-1, 8, 8).flip(-1).reshape(-1, 64)

    fig: dict[str, float] = {}
    lrs = (1e-3, 1e-4, 1e-5)
    per_lr: dict[float, list[tuple[float, float]]] = {lr: [] for lr in lrs}
    before = []
    for seed in range(max(ctx.seeds, 2)):
        torch.manual_seed(seed)
        base = _mlp()
        _train(base, xtr, ytr, 1e-3, 1500 if ctx.quick else 3000, seed)  # pre-training
        before.append((_acc(base, xte, yte), _acc(base, flip(xte), yte)))
        small = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(seed))[:200]
        for lr in lrs:
            model = copy.deepcopy(base)
            _train(model, flip(xtr[small]), ytr[small], lr, 300, seed + 100)
            per_lr[lr].append((_acc(model, xte, yte), _acc(model, flip(xte), yte)))
    fig["pre-trained: original-task accuracy"] = float(np.mean([b[0] for b in before]))
    fig["pre-trained: mirrored-task accuracy"] = float(np.mean([b[1] for b in before]))
    rows = []
    for lr in lrs:
        orig = float(np.mean([a[0] for a in per_lr[lr]]))
        new = float(np.mean([a[1] for a in per_lr[lr]]))
        fig[f"lr={lr:g}: original-task accuracy after"] = orig
        fig[f"lr={lr:g}: mirrored-task accuracy after"] = new
        fig[f"lr={lr:g}: original-task accuracy lost"] = (
            fig["pre-trained: original-task accuracy"] - orig
        )
        rows.append([f"{lr:g}", f"{orig:.3f}", f"{new:.3f}"])
    return Measurement(
        fig,
        table=(["fine-tuning lr", "original task acc", "mirrored task acc"], rows),
        remarks=[
            "Pre-train the digits MLP with Adam at 1e-3, then fine-tune all weights for 300 "
            "steps on 200 mirrored digits with Adam at 1e-3, 1e-4 or 1e-5. The seed's advice is "
            "about large pre-trained models; this is a small one, so read the verdict as what "
            "happens at this scale."
        ],
    )


FINETUNE = Claim(
    key="finetune-lr",
    title="Adam's 1e-3 is too aggressive for fine-tuning",
    quote=(
        "Using Adam's default learning rate for fine-tuning large models. 1e-3 is too "
        "aggressive for fine-tuning - use 1e-5 or 1e-4."
    ),
    experiment=(
        "Pre-train an MLP on digits, fine-tune on a related task (mirrored digits, 200 "
        "samples) at Adam lr 1e-3 / 1e-4 / 1e-5; measure what the original task "
        "loses and what the new task gains."
    ),
    criteria=(
        Criterion(
            "at 1e-3 the original task loses at least 5 points more accuracy than at 1e-4",
            lambda f: (
                f["lr=0.001: original-task accuracy lost"]
                >= f["lr=0.0001: original-task accuracy lost"] + 0.05
            ),
        ),
        Criterion(
            "1e-4 learns the new task to within 2 points of 1e-3",
            lambda f: (
                f["lr=0.0001: mirrored-task accuracy after"]
                >= f["lr=0.001: mirrored-task accuracy after"] - 0.02
            ),
        ),
        Criterion(
            "1e-5 learns the new task to within 2 points of 1e-3",
            lambda f: (
                f["lr=1e-05: mirrored-task accuracy after"]
                >= f["lr=0.001: mirrored-task accuracy after"] - 0.02
            ),
        ),
    ),
    measure=measure_finetune,
)

# ------------------------------------------------------------------ forgetting zero_grad


def _seed_loop(make_opt, zero_grad: bool, epochs: int = 50) -> tuple[float, float]:
    """The seed's training loop; returns (final full loss, cosine(applied grad, true grad))."""
    torch.manual_seed(0)
    model = torch.nn.Linear(10, 1)
    x, y = torch.randn(100, 10), torch.randn(100, 1)
    opt = make_opt(model.parameters())
    loss_fn = torch.nn.MSELoss()
    for _ in range(epochs):
        if zero_grad:
            opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    applied = torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])
    model.zero_grad()
    final = loss_fn(model(x), y)
    final.backward()
    true = torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])
    cos = float(torch.nn.functional.cosine_similarity(applied, true, dim=0))
    return float(final.detach()), cos


def measure_zero_grad(ctx: Context) -> Measurement:
    fig: dict[str, float] = {}
    for name, make in (
        ("SGD(0.01, momentum=0.9)", lambda p: dt.SGD(p, lr=0.01, momentum=0.9)),
        ("Adam(1e-3)", lambda p: dt.Adam(p, lr=1e-3)),
    ):
        for zero in (True, False):
            loss, cos = _seed_loop(make, zero)
            tag = "with zero_grad" if zero else "without zero_grad"
            fig[f"{name} {tag}: final loss"] = loss
            fig[f"{name} {tag}: cosine(applied, true gradient)"] = cos
    return Measurement(
        fig,
        remarks=[
            "The seed's own loop (nn.Linear(10, 1) on random data, 50 full-batch epochs) with its "
            "own optimizers, once as written and once without opt.zero_grad()."
        ],
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
        "The seed's training loop with SGD(lr=0.01, momentum=0.9) and Adam(lr=1e-3), "
        "with and without zero_grad(): final loss, and the cosine between the gradient "
        "the last step used and the true gradient there."
    ),
    criteria=(
        Criterion(
            "with SGD+momentum, forgetting zero_grad ends at least 10% higher",
            lambda f: (
                f["SGD(0.01, momentum=0.9) without zero_grad: final loss"]
                >= 1.1 * f["SGD(0.01, momentum=0.9) with zero_grad: final loss"]
            ),
        ),
        Criterion(
            "with Adam, forgetting zero_grad ends at least 10% higher",
            lambda f: (
                f["Adam(1e-3) without zero_grad: final loss"]
                >= 1.1 * f["Adam(1e-3) with zero_grad: final loss"]
            ),
        ),
        Criterion(
            "without zero_grad the applied gradient no longer points along the true one "
            "(cosine < 0.9) for both",
            lambda f: (
                f["SGD(0.01, momentum=0.9) without zero_grad: cosine(applied, true gradient)"] < 0.9
                and f["Adam(1e-3) without zero_grad: cosine(applied, true gradient)"] < 0.9
            ),
        ),
    ),
    measure=measure_zero_grad,
)

# ------------------------------------------------------------------ stale momentum


def _around_cut(form: str, cut_at: int = 8, steps: int = 20) -> list[float]:
    """Step sizes on f = 0.5 w^2 from w = 10 when lr drops 10x after step ``cut_at``."""
    beta, lr = 0.9, 0.05
    if form == "lr inside the buffer (Keras/TF1)":
        # m = beta * m - lr * g; w += m: the same pieces, the lr step placed first
        rule = rules.Rule("sgd-lr-inside", (rules.ScaleByLR(), rules.HeavyBall()))
        scale = 1.0
    elif form == "heavy-ball, lr outside (torch)":
        rule, scale = rules.sgd(momentum=True), 1.0
    else:  # the seed's EMA form, lr scaled so both take identical steps before the cut
        rule, scale = rules.ema_momentum(), 1.0 / (1 - beta)
    w = np.array([10.0])
    state = rule.init(w)
    sizes = []
    for t in range(1, steps + 1):
        step_lr = lr * scale * (0.1 if t > cut_at else 1.0)
        new, state = rule.step(w, w.copy(), state, step=t, lr=step_lr, momentum=beta, dampening=0.0)
        sizes.append(float(abs(new - w)[0]))
        w = new
    return sizes


FORMS = (
    "lr inside the buffer (Keras/TF1)",
    "heavy-ball, lr outside (torch)",
    "EMA, lr outside (the seed)",
)


def measure_stale(ctx: Context) -> Measurement:
    cut = 8
    fig: dict[str, float] = {"lr cut": 0.1, "cut after step": cut}
    plt = pyplot()
    f, ax = plt.subplots(figsize=(6, 3.6))
    for form in FORMS:
        sizes = _around_cut(form, cut)
        fig[f"{form}: step after cut / step before"] = sizes[cut] / sizes[cut - 1]
        ax.semilogy(range(1, len(sizes) + 1), sizes, "o-", label=form, markersize=3)
    ax.axvline(cut + 0.5, color="grey", linestyle=":")
    ax.set_xlabel("step (lr cut 10x after step 8)")
    ax.set_ylabel("|w_t - w_{t-1}|")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    path = save_figure(ctx, f, "stale-momentum")
    return Measurement(
        fig,
        [("Step sizes around a 10x lr cut, three momentum conventions", path)],
        remarks=[
            "Before the cut the three forms take identical steps. Where the lr multiplies the "
            "buffer at use (torch, the seed) the cut applies at once; where the buffer holds "
            "lr-scaled steps (Keras, TF1) the old steps keep coming."
        ],
    )


STALE = Claim(
    key="stale-momentum",
    title="Momentum carries stale velocity across an lr cut",
    quote=(
        "Momentum carries stale velocity across learning rate changes. If you cut the LR "
        "mid-training, the accumulated momentum can overshoot for a few steps."
    ),
    experiment=(
        "0.5 w^2 from w = 10, momentum 0.9, lr 0.05 cut to 0.005 after step 8, in the "
        "three conventions (all built from descentlab's transforms): the size of the "
        "first step after the cut relative to the last one before (a clean cut gives "
        "about 0.1)."
    ),
    criteria=(
        Criterion(
            "with the lr inside the buffer (Keras/TF1), the step after the cut is still "
            "over half the step before",
            lambda f: f[f"{FORMS[0]}: step after cut / step before"] > 0.5,
        ),
        Criterion(
            "with torch's heavy-ball form, the step after the cut is still over half",
            lambda f: f[f"{FORMS[1]}: step after cut / step before"] > 0.5,
        ),
        Criterion(
            "with the seed's EMA form, the step after the cut is still over half",
            lambda f: f[f"{FORMS[2]}: step after cut / step before"] > 0.5,
        ),
    ),
    measure=measure_stale,
)

# ------------------------------------------------------------------ Adam + L2 vs AdamW


def measure_decay(ctx: Context) -> Measurement:
    lrs = (1e-3, 1e-2) if ctx.quick else (3e-4, 1e-3, 3e-3, 1e-2)
    wds = (0.0, 1e-3, 1e-2, 1e-1) if ctx.quick else (0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    epochs = 3 if ctx.quick else 10
    grids: dict[str, np.ndarray] = {}
    losses: dict[str, np.ndarray] = {}
    for name in ("adam", "adamw"):
        acc = np.zeros((len(wds), len(lrs)))
        loss = np.zeros_like(acc)
        for i, wd in enumerate(wds):
            spec = f"{name}:weight_decay={wd:g}"
            by_lr = lab_runs("digits-mlp", spec, lrs, ctx.seeds, "minibatch:64", epochs=epochs)
            for j, lr in enumerate(lrs):
                acc[i, j] = metric(by_lr[lr], "test_acc")
                loss[i, j] = np.mean([r["evals"][-1]["train_loss"] for r in by_lr[lr]])
        grids[name], losses[name] = acc, loss
    decayed = [(i, j) for i in range(len(wds)) for j in range(len(lrs)) if wds[i] > 0]
    differ = [abs(losses["adam"][c] / losses["adamw"][c] - 1) > 0.1 for c in decayed]
    fig: dict[str, float] = {
        "cells with decay": len(decayed),
        "cells where final losses differ by > 10%": int(sum(differ)),
        "Adam+L2 best test accuracy": float(grids["adam"].max()),
        "AdamW best test accuracy": float(grids["adamw"].max()),
        "Adam+L2 test accuracy at the largest decay (mean over lrs)": float(
            grids["adam"][-1].mean()
        ),
        "AdamW test accuracy at the largest decay (mean over lrs)": float(
            grids["adamw"][-1].mean()
        ),
    }
    plt = pyplot()
    f, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for ax, name in zip(axes, ("adam", "adamw"), strict=True):
        im = ax.imshow(grids[name], vmin=0, vmax=1, cmap="viridis", origin="lower", aspect="auto")
        ax.set_xticks(range(len(lrs)), [f"{x:g}" for x in lrs])
        ax.set_yticks(range(len(wds)), [f"{x:g}" for x in wds])
        ax.set_xlabel("learning rate")
        ax.set_ylabel("weight_decay")
        ax.set_title(
            "Adam(weight_decay) = L2" if name == "adam" else "AdamW (decoupled)", fontsize=9
        )
        for i in range(len(wds)):
            for j in range(len(lrs)):
                ax.text(
                    j,
                    i,
                    f"{grids[name][i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if grids[name][i, j] < 0.5 else "black",
                )
    f.colorbar(im, ax=axes, shrink=0.8, label="held-out accuracy")
    path = save_figure(ctx, f, "adam-l2-vs-adamw")
    return Measurement(fig, [("Held-out accuracy over lr x weight decay, digits MLP", path)])


DECAY = Claim(
    key="adam-l2-vs-adamw",
    title="Adam with weight decay is not AdamW",
    quote=(
        "Adam with weight decay is not the same as AdamW. Standard Adam applies weight "
        "decay incorrectly (inside the adaptive step). AdamW fixes this - prefer "
        "torch.optim.AdamW for regularized training."
    ),
    experiment=(
        "The digits MLP trained with Adam(weight_decay=wd) and AdamW(weight_decay=wd) "
        "over a grid of learning rates x weight decays; held-out accuracy heatmaps."
    ),
    criteria=(
        Criterion(
            "they are not the same: final losses differ by more than 10% in at least half "
            "the cells with decay on",
            lambda f: f["cells where final losses differ by > 10%"] >= 0.5 * f["cells with decay"],
        ),
        Criterion(
            "for regularized training AdamW is at least as good: best held-out accuracy "
            "within 0.5 points of Adam+L2's or better",
            lambda f: f["AdamW best test accuracy"] >= f["Adam+L2 best test accuracy"] - 0.005,
        ),
    ),
    measure=measure_decay,
)
