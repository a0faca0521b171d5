"""Update rules: each variant's math, written once for one array.

A rule is built from its *structure* (``sgd(momentum=True, nesterov=True)``) and applied
with per-step *coefficients* computed from the hyperparameters. The same rule object is
executed by the PyTorch drop-ins (:mod:`descentlab.torch`), the NumPy API
(:mod:`descentlab.numpy`) and every fast engine.
"""

from .adagrad import ScaleByAdadelta, ScaleByAdagrad, ScaleByDecayedLR, adadelta, adagrad
from .adam import ScaleByAdam, ScaleByAdamax, ScaleByRAdam, adam, adamax, adamw, radam
from .base import Rule, Transform, absolute, advance, ema, maximum, sqrt
from .common import AddL2, DecoupledDecay, FlipSign, ScaleByLR, chain
from .momentum import EmaMomentum, HeavyBall, ema_momentum, sgd
from .rmsprop import ScaleByRms, rmsprop

__all__ = [
    "AddL2",
    "DecoupledDecay",
    "EmaMomentum",
    "FlipSign",
    "HeavyBall",
    "Rule",
    "ScaleByAdadelta",
    "ScaleByAdagrad",
    "ScaleByAdam",
    "ScaleByAdamax",
    "ScaleByDecayedLR",
    "ScaleByLR",
    "ScaleByRAdam",
    "ScaleByRms",
    "Transform",
    "absolute",
    "adadelta",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "advance",
    "chain",
    "ema",
    "ema_momentum",
    "maximum",
    "radam",
    "rmsprop",
    "sgd",
    "sqrt",
]
