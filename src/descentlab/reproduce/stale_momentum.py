"""The seed's pitfall "momentum carries stale velocity across an lr cut", measured in three
momentum conventions built from descentlab's transforms. The problem is deterministic:
there is nothing to average over seeds.
"""

from __future__ import annotations

import numpy as np

from .. import rules
from .base import Claim, Context, Measurement, Statement, require, support
from .common import pyplot, save_figure

BETA, LR0, CUT_TO, CUT_AT, AFTER = 0.9, 0.05, 0.1, 8, 5
FORMS = (
    "lr inside the buffer (Keras SGD)",
    "heavy-ball, lr outside (torch, TF1)",
    "EMA, lr outside (the seed)",
)


def momentum_form(form: str, beta: float = BETA) -> tuple[rules.Rule, float, bool]:
    """One of :data:`FORMS`: the rule, its lr scale (equal steps before the cut at momentum
    ``beta``), and whether its buffer holds lr-scaled steps (so that the cut reaches the
    velocity only through new gradients). The explainer draws the same three."""
    if form == FORMS[0]:
        # m = beta * m - lr * g; w += m: the same pieces, the lr step placed first
        return rules.Rule("sgd-lr-inside", (rules.ScaleByLR(), rules.HeavyBall())), 1.0, True
    if form == FORMS[1]:
        return rules.sgd(momentum=True), 1.0, False
    return rules.ema_momentum(), 1.0 / (1 - beta), False  # the seed's EMA at the same steps


def step_sizes(
    form: str,
    at_once: bool = False,
    *,
    beta: float = BETA,
    cut: float = CUT_TO,
    cut_at: int = CUT_AT,
    lr0: float = LR0,
    steps: int = 20,
) -> list[float]:
    """Step sizes on f = 0.5 w^2 from w = 10 when the lr is multiplied by ``cut`` after
    step ``cut_at``, in one of :data:`FORMS` at momentum ``beta``.

    ``at_once``: at the cut, scale the velocity (the buffer, in units of a step) by the cut
    too, which is what the new lr alone would give; a form whose lr multiplies the buffer at
    use already does this, so there the two runs coincide."""
    rule, scale, lr_inside = momentum_form(form, beta)
    w = np.array([10.0])
    state = rule.init(w)
    sizes = []
    for t in range(1, steps + 1):
        if t == cut_at + 1 and at_once and lr_inside:
            state = {**state, "momentum_buffer": state["momentum_buffer"] * cut}
        step_lr = lr0 * scale * (cut if t > cut_at else 1.0)
        new, state = rule.step(w, w.copy(), state, step=t, lr=step_lr, momentum=beta, dampening=0.0)
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
        kept, clean = step_sizes(form, False), step_sizes(form, True)
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
        exact=True,  # a deterministic recurrence on a quadratic: algebra, not a sample
    )


CLAIM = Claim(
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
