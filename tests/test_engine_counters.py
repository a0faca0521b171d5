"""Private step counters (SGD, Momentum) only flag a parameter's first step.

torch.optim.SGD keeps no ``step`` in its state; descentlab keeps a private counter per
parameter because its rule asks whether the momentum buffer is new. The eager engine leaves
a counter that is past the first step as it is (one foreach call fewer per step); that is
only right while every such rule's coefficients are the same from the second step on.
"""

from __future__ import annotations

import pytest
import torch

import descentlab.torch as dt
from descentlab import optimizers
from helpers import rel_err

PRIVATE = [info for info in optimizers.REGISTRY.values() if not info.stores_step]
SETTINGS = [
    {"momentum": 0.9},
    {"momentum": 0.9, "nesterov": True},
    {"momentum": 0.9, "dampening": 0.3, "weight_decay": 1e-2},
    {},
]


@pytest.mark.parametrize("info", PRIVATE, ids=lambda i: i.name)
def test_rules_with_private_counters_only_tell_the_first_step(info) -> None:  # type: ignore[no-untyped-def]
    for extra in SETTINGS:
        hp = {**info.defaults, "lr": 0.1}
        hp.update({k: v for k, v in extra.items() if k in info.defaults})
        if info.name == "sgd" and hp.get("nesterov") and not hp.get("momentum"):
            continue
        rule = info.rule(hp)
        if not rule.elementwise:
            continue
        second = rule.coefficients(hp, 2)
        for step in (3, 10, 1000, 10**6):
            assert rule.coefficients(hp, step) == second, (info.name, extra, step)


def test_the_eager_engine_leaves_a_private_counter_past_its_first_step() -> None:
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(40 + i)) for i in range(20)]
    twins = [torch.nn.Parameter(p.detach().clone()) for p in params]
    opt = dt.SGD(params, lr=0.1, momentum=0.9, engine="eager")
    ref = torch.optim.SGD(twins, lr=0.1, momentum=0.9)
    for step in range(6):
        for p, q in zip(params, twins, strict=True):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        if step == 3:  # a parameter without a gradient skips a step, then comes back
            params[0].grad = twins[0].grad = None
        opt.step()
        ref.step()
    assert opt.engine_counts["eager"] == 6 * 20 - 1
    counters = {float(home["step"]) for home in opt._step_home.values()}
    assert counters == {1.0}, "a private counter was advanced past the first step"
    for p, q in zip(params, twins, strict=True):
        assert rel_err(p, q) <= 1e-6
        assert rel_err(opt.state[p]["momentum_buffer"], ref.state[q]["momentum_buffer"]) <= 1e-6
