"""The fair setups of ``descentlab reproduce``: what they measure can fail.

Saddles and the consistent direction tune each method over the same grid; fine-tuning runs
every lr to convergence or says it did not. Each test plants the case the setup must catch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from descentlab import numpy as dnp
from descentlab.reproduce import finetune, momentum
from descentlab.reproduce.base import FAILS, HOLDS, NOT_TESTED, Context, judge


def test_heavy_ball_without_momentum_escapes_a_saddle_exactly_as_gradient_descent() -> None:
    """The escape count reads the rule, not the arm's name: at beta 0 the two coincide."""
    for c in momentum.CURVATURES:
        w0 = momentum._saddle_start(0, c)
        for lr in (0.5, 1.0, 1.9):
            gd = momentum._escape_steps(dnp.sgd(lr=lr), c, w0)
            hb = momentum._escape_steps(dnp.sgd(lr=lr, momentum=0.0), c, w0)
            assert gd == hb <= momentum.SADDLE_CAP
        # and the smaller the negative curvature, the longer gradient descent takes
    steps = [momentum._escape_steps(dnp.sgd(lr=1.0), c, momentum._saddle_start(0, c)) for c in
             momentum.CURVATURES]  # fmt: skip
    assert steps == sorted(steps)


def test_the_saddle_effect_does_not_hold_when_momentum_is_taken_away(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A planted null: the 'momentum' arm's betas all 0 makes it gradient descent on a
    coarser lr grid, and the statement must not hold."""
    st = momentum.SADDLE.statements[0]
    real = momentum.measure_saddle(Context(tmp_path, True, 3))
    assert judge(st, real.figures, real.flags, real.samples).verdict == HOLDS
    monkeypatch.setattr(momentum, "HB_BETAS", (0.0,) * len(momentum.HB_BETAS))
    null = momentum.measure_saddle(Context(tmp_path, True, 3))
    assert max(null.samples[momentum.ESCAPES]) <= 0.0  # never faster than tuned GD
    assert judge(st, null.figures, null.flags, null.samples).verdict == FAILS


def test_a_crossing_of_zero_is_not_arriving() -> None:
    """The consistent direction counts the first step from which |x| stays small: a heavy
    ball that overshoots through zero has not arrived."""
    path = np.zeros((30, 2))
    path[:, 0] = [5.0, 0.01, -3.0, *([0.0] * 27)]  # crosses zero at step 1, settles at 3
    assert momentum._reach(path, 29) == 3


def test_fine_tuning_cut_short_is_not_tested_rather_than_failed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A budget too short for 1e-5 to converge: the statement about 1e-5 is 'not tested'
    (the run could not show it), never 'does not hold'."""
    monkeypatch.setattr(finetune, "_RUNS", {})
    monkeypatch.setattr(finetune, "BUDGET", 200)
    monkeypatch.setattr(finetune, "PRETRAIN_STEPS", 300)
    m = finetune.measure_finetune(Context(tmp_path, True, 1))
    assert m.figures["lr=1e-05: seeds converged within the budget"] < m.figures["seeds"]
    by_key = {s.key: s for s in finetune.CLAIM.statements}
    got = judge(by_key["1e-5-suffices"], m.figures, m.flags, m.samples)
    assert got.verdict == NOT_TESTED and "converges within the budget" in got.detail
    # pre-training transfers: the pre-trained model beats training from scratch
    assert (
        m.figures["pre-trained: new-task accuracy"]
        > m.figures["from scratch at 1e-3: new-task accuracy"]
    )
