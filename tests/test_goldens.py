"""Hand-derived values for the first steps of each rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import descentlab.numpy as dnp
import descentlab.torch as dt
from descentlab import rules


def test_first_adam_step_moves_each_weight_by_lr_sign_g() -> None:
    g = np.array([3.0, -0.02, 1e4, -7e-3])
    w, _ = dnp.adam(lr=1e-3, eps=1e-30).update(np.zeros(4), g, dnp.adam().init(np.zeros(4)))
    np.testing.assert_allclose(w, -1e-3 * np.sign(g), rtol=1e-14)


def test_first_adamw_step_adds_decay_to_the_sign_step() -> None:
    p = torch.nn.Parameter(torch.tensor([2.0, -1.0], dtype=torch.float64))
    opt = dt.AdamW([p], lr=0.1, weight_decay=0.5, eps=1e-30)
    p.grad = torch.tensor([1.0, 1.0], dtype=torch.float64)
    opt.step()
    expected = torch.tensor(
        [2.0 - 0.1 - 0.1 * 0.5 * 2.0, -1.0 - 0.1 + 0.1 * 0.5 * 1.0], dtype=torch.float64
    )
    torch.testing.assert_close(p.detach(), expected, rtol=1e-14, atol=0)


def test_adam_second_step_by_hand() -> None:
    b1, b2, lr = 0.9, 0.999, 0.01
    g1, g2 = 1.0, -3.0
    m1, v1 = (1 - b1) * g1, (1 - b2) * g1**2
    w1 = -lr * (m1 / (1 - b1)) / (math.sqrt(v1 / (1 - b2)))
    m2, v2 = b1 * m1 + (1 - b1) * g2, b2 * v1 + (1 - b2) * g2**2
    w2 = w1 - lr * (m2 / (1 - b1**2)) / (math.sqrt(v2 / (1 - b2**2)))
    opt = dnp.adam(lr=lr, eps=1e-300)
    w, s = opt.update(np.zeros(1), np.array([g1]), opt.init(np.zeros(1)))
    w, s = opt.update(w, np.array([g2]), s)
    assert w[0] == pytest.approx(w2, rel=1e-14)
    assert s.slots["exp_avg"][0] == pytest.approx(m2, rel=1e-14)
    assert s.slots["exp_avg_sq"][0] == pytest.approx(v2, rel=1e-14)


def test_adam_without_bias_correction_takes_a_tiny_first_step() -> None:
    # m1 = 0.1 g, sqrt(v1) = sqrt(0.001) |g|: the step is 0.1/0.0316 = 3.16 x lr, not lr.
    opt = dnp.adam(lr=1e-3, eps=1e-30, bias_correction=False)
    w, _ = opt.update(np.zeros(1), np.array([5.0]), opt.init(np.zeros(1)))
    assert w[0] == pytest.approx(-1e-3 * 0.1 / math.sqrt(0.001), rel=1e-13)


def test_ema_momentum_first_step_is_lr_times_one_minus_beta_times_g() -> None:
    g = np.array([2.0, -4.0])
    opt = dnp.momentum(lr=0.1, momentum=0.9)
    w, s = opt.update(np.zeros(2), g, opt.init(np.zeros(2)))
    np.testing.assert_allclose(w, -0.1 * (1 - 0.9) * g, rtol=1e-15)
    w, s = opt.update(w, g, s)  # v2 = 0.9 * 0.1 g + 0.1 g = 0.19 g
    np.testing.assert_allclose(w, -0.1 * (0.1 + 0.19) * g, rtol=1e-14)


def test_heavy_ball_starts_its_buffer_at_the_gradient_and_nesterov_looks_ahead() -> None:
    g1, g2 = 1.0, 2.0
    opt = dnp.sgd(lr=0.1, momentum=0.9, dampening=0.5)
    w, s = opt.update(np.zeros(1), np.array([g1]), opt.init(np.zeros(1)))
    assert s.slots["momentum_buffer"][0] == g1  # not (1 - dampening) * g1
    w, s = opt.update(w, np.array([g2]), s)
    assert s.slots["momentum_buffer"][0] == pytest.approx(0.9 * g1 + 0.5 * g2)
    assert w[0] == pytest.approx(-0.1 * g1 - 0.1 * (0.9 * g1 + 0.5 * g2))
    nes = dnp.sgd(lr=0.1, momentum=0.9, nesterov=True)
    w, s = nes.update(np.zeros(1), np.array([g1]), nes.init(np.zeros(1)))
    assert w[0] == pytest.approx(-0.1 * (g1 + 0.9 * g1))


def test_rmsprop_first_step_and_centered_first_step() -> None:
    g = np.array([4.0])
    plain = dnp.rmsprop(lr=0.01, eps=1e-30)
    w, _ = plain.update(np.zeros(1), g, plain.init(np.zeros(1)))
    assert w[0] == pytest.approx(-0.01 / math.sqrt(0.01), rel=1e-14)
    centered = dnp.rmsprop(lr=0.01, eps=1e-30, centered=True)
    w, _ = centered.update(np.zeros(1), g, centered.init(np.zeros(1)))
    # s = 0.01 g^2, gbar = 0.01 g: denominator sqrt(0.01 - 0.0001) |g|
    assert w[0] == pytest.approx(-0.01 / math.sqrt(0.01 - 0.0001), rel=1e-14)


def test_l2_and_decoupled_decay_differ_only_in_chain_order() -> None:
    l2 = [type(t).__name__ for t in rules.adam(weight_decay="l2").transforms]
    decoupled = [type(t).__name__ for t in rules.adamw().transforms]
    assert l2 == ["AddL2", "ScaleByAdam", "ScaleByLR"]
    assert decoupled == ["ScaleByAdam", "ScaleByLR", "DecoupledDecay"]
    # and with a zero gradient, L2 Adam's first step is a full lr*sign step, AdamW's a decay
    for name, expected in (("adam", 2.0 - 0.1), ("adamw", 2.0 * (1 - 0.1 * 0.5))):
        opt = dnp.Transformation(name, lr=0.1, weight_decay=0.5, eps=1e-30)
        w, _ = opt.update(np.array([2.0]), np.array([0.0]), opt.init(np.zeros(1)))
        assert w[0] == pytest.approx(expected, rel=1e-14), name


def test_adagrad_two_steps_by_hand_from_its_initial_accumulator() -> None:
    # s0 = 1; g1 = 3: s1 = 10, w1 = -0.1 * 3 / sqrt(10); g2 = -1 with lr_decay 0.5 at t = 2:
    # lr_2 = 0.1 / 1.5, s2 = 11, w2 = w1 + lr_2 / sqrt(11).
    hp = {"lr": 0.1, "lr_decay": 0.5, "eps": 0.0, "initial_accumulator_value": 1.0}
    w1 = -0.1 * 3 / math.sqrt(10)
    w2 = w1 + 0.1 / 1.5 / math.sqrt(11)
    opt = dnp.adagrad(**hp)
    w, s = opt.update(np.zeros(1), np.array([3.0]), opt.init(np.zeros(1)))
    assert w[0] == pytest.approx(w1, rel=1e-15) and s.slots["sum"][0] == 10.0
    w, s = opt.update(w, np.array([-1.0]), s)
    assert w[0] == pytest.approx(w2, rel=1e-15) and s.slots["sum"][0] == 11.0
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    drop_in = dt.Adagrad([p], **hp)
    assert drop_in.state[p]["sum"].item() == 1.0  # created at once, as torch's
    for g in (3.0, -1.0):
        p.grad = torch.tensor([g], dtype=torch.float64)
        drop_in.step()
    assert p.item() == pytest.approx(w2, rel=1e-15)


def test_adadelta_two_steps_by_hand() -> None:
    # rho = 0.5, eps = 1: v1 = 0.5 * 4 = 2, x1 = sqrt(1) / sqrt(3) * 2, d1 = 0.5 * x1**2;
    # g2 = 2 again: v2 = 0.5 * 2 + 0.5 * 4 = 3, x2 = sqrt(d1 + 1) / sqrt(4) * 2.
    x1 = 2 / math.sqrt(3)
    d1 = 0.5 * x1**2
    x2 = math.sqrt(d1 + 1) / 2 * 2
    opt = dnp.adadelta(lr=0.5, rho=0.5, eps=1.0)
    w, s = opt.update(np.zeros(1), np.array([2.0]), opt.init(np.zeros(1)))
    w, s = opt.update(w, np.array([2.0]), s)
    assert w[0] == pytest.approx(-0.5 * (x1 + x2), rel=1e-15)
    assert s.slots["square_avg"][0] == pytest.approx(3.0, rel=1e-15)
    assert s.slots["acc_delta"][0] == pytest.approx(0.5 * d1 + 0.5 * x2**2, rel=1e-15)


def test_adamax_two_steps_by_hand() -> None:
    # b1 = 0.5, b2 = 0.9, eps = 0: m1 = 0.5 * 4, n1 = 4, w1 = -lr / 0.5 * 2 / 4 = -lr;
    # g2 = -1: m2 = 0.5, n2 = max(3.6, 1) = 3.6, w2 = w1 - lr / 0.75 * 0.5 / 3.6.
    lr = 0.1
    opt = dnp.adamax(lr=lr, betas=(0.5, 0.9), eps=0.0)
    w, s = opt.update(np.zeros(1), np.array([4.0]), opt.init(np.zeros(1)))
    assert w[0] == pytest.approx(-lr, rel=1e-15)
    w, s = opt.update(w, np.array([-1.0]), s)
    assert w[0] == pytest.approx(-lr - lr / 0.75 * 0.5 / 3.6, rel=1e-15)
    assert s.slots["exp_inf"][0] == pytest.approx(3.6, rel=1e-15)


def test_radam_is_momentum_sgd_until_step_6_then_rectified() -> None:
    # beta2 = 0.999: rho_t <= 5 for t <= 5, so w moves by lr * m_hat; at t = 6 the step is
    # lr * m_hat * r_6 * sqrt(1 - beta2**6) / (sqrt(v_6) + eps), r_6 from rho_6 by hand.
    b1, b2, lr, g = 0.9, 0.999, 0.1, 2.0
    opt = dnp.radam(lr=lr, betas=(b1, b2), eps=0.0)
    w, s = np.zeros(1), opt.init(np.zeros(1))
    for _ in range(5):
        w, s = opt.update(w, np.array([g]), s)
    assert w[0] == pytest.approx(-5 * lr * g, rel=1e-14)  # a constant g: m_hat = g
    w, s = opt.update(w, np.array([g]), s)
    rho_inf = 2 / (1 - b2) - 1
    rho_6 = rho_inf - 2 * 6 * b2**6 / (1 - b2**6)
    r_6 = math.sqrt((rho_6 - 4) * (rho_6 - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_6))
    v_6 = (1 - b2**6) * g**2
    step_6 = lr * g * r_6 * math.sqrt(1 - b2**6) / math.sqrt(v_6)  # = lr * r_6
    assert rho_6 > 5 > rho_inf - 2 * 5 * b2**5 / (1 - b2**5)
    assert w[0] == pytest.approx(-5 * lr * g - step_6, rel=1e-13)
