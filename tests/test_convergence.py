"""Every optimizer in the case table reaches the optimum of a parabola and of Rosenbrock."""

from __future__ import annotations

import pytest
import torch

from cases import CASES, Case, ids

# (lr, steps) per optimizer, the same for every configuration of it.
PARABOLA = {
    "sgd": (0.05, 1500),
    "momentum": (0.1, 1500),
    "rmsprop": (1e-2, 2000),
    "adam": (5e-2, 2000),
    "adamw": (5e-2, 2000),
    "adagrad": (0.5, 2000),
    "adadelta": (0.5, 2000),
    "adamax": (1e-2, 2000),
    "radam": (2e-2, 2000),
    "nadam": (2e-2, 2000),
    "asgd": (0.05, 1500),
    "rprop": (1e-2, 500),
    "adafactor": (1e-2, 2000),
}
ROSENBROCK = {
    "sgd": (2e-3, 5000),
    "momentum": (1e-2, 5000),
    "rmsprop": (2e-3, 5000),
    "adam": (2e-2, 5000),
    "adamw": (2e-2, 5000),
    "adagrad": (0.3, 10000),
    "adamax": (1e-2, 5000),
    "radam": (1e-3, 10000),  # its first, unrectified steps are plain momentum steps
    "nadam": (1e-2, 5000),
    "asgd": (2e-3, 5000),
    "rprop": (1e-2, 5000),
    # its step is normalized (relative to RMS(w)) and shrinks only as min(lr, 1/sqrt(t)):
    # it settles within 0.02 of (1, 1) after 20,000 steps (measured: 0.01-0.018)
    "adafactor": (0.1, 20000),
}
ROSENBROCK_BY_CASE = {"sgd-nesterov": (1e-3, 5000)}  # the look-ahead overshoots at 2e-3
# Adadelta does not reach Rosenbrock's minimum in 10,000 steps from (-1, 1.5) (measured: a
# loss of 0.33-0.59 at lr 0.5-1, erratic with rho=0.8; torch.optim.Adadelta's paths end as
# far, apart from round-off amplified along the valley): a property of the method. Its
# steps equal torch's in lock-step in tests/test_torch_optim_db.py.
SLOW_ON_ROSENBROCK = {"adadelta"}


def _run(case: Case, loss_fn, start: list[float], lr: float, steps: int) -> torch.Tensor:
    w = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    # weight decay would move the optimum away from the objective's own; lr decay is a
    # schedule, and these checks hold the lr fixed
    hp = {**case.hp, "lr": lr}
    for decay in ("weight_decay", "lr_decay", "lambd"):  # lambd: ASGD's pull toward zero
        if decay in case.cls.info.defaults:
            hp[decay] = 0.0
    sign = -1.0 if hp.get("maximize") else 1.0
    opt = case.cls([w], **hp)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = sign * loss_fn(w)
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
    return w.detach()


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_converges_on_a_parabola(case: Case) -> None:
    target = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    lr, steps = PARABOLA[case.name]
    w = _run(case, lambda w: ((w - target) ** 2).sum(), [0.0, 0.0, 0.0], lr, steps)
    assert (w - target).abs().max() < 3e-2, w


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_converges_on_rosenbrock(case: Case) -> None:
    if case.name in SLOW_ON_ROSENBROCK:
        pytest.skip(f"{case.name} does not reach Rosenbrock's minimum in this budget")
    lr, steps = ROSENBROCK_BY_CASE.get(case.id, ROSENBROCK[case.name])

    def rosenbrock(w: torch.Tensor) -> torch.Tensor:
        return (1 - w[0]) ** 2 + 100 * (w[1] - w[0] ** 2) ** 2

    w = _run(case, rosenbrock, [-1.0, 1.5], lr, steps)

    assert (w - torch.tensor([1.0, 1.0], dtype=torch.float64)).abs().max() < 3e-2, w
