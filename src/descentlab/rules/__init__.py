"""Update rules: each variant's math, written once for one array.

A rule is built from its *structure* (``sgd(momentum=True, nesterov=True)``) and applied
with per-step *coefficients* computed from the hyperparameters. The same rule object is
executed by the PyTorch drop-ins (:mod:`descentlab.torch`), the NumPy API
(:mod:`descentlab.numpy`) and every fast engine.
"""

from .adagrad import ScaleByAdadelta, ScaleByAdagrad, ScaleByDecayedLR, adadelta, adagrad
from .adam import (
    ScaleByAdam,
    ScaleByAdamax,
    ScaleByNAdam,
    ScaleByRAdam,
    adam,
    adamax,
    adamw,
    nadam,
    radam,
)
from .asgd import AverageIterates, ScaleByEta, ScaleByRprop, asgd, rprop
from .base import Rule, Transform, absolute, advance, clip, ema, maximum, sign, sqrt, where
from .common import AddL2, DecoupledDecay, FlipSign, ScaleByLR, chain
from .matrix import ScaleByAdafactor, ScaleByMuon, adafactor, muon
from .momentum import EmaMomentum, HeavyBall, ema_momentum, sgd
from .rmsprop import ScaleByRms, rmsprop

__all__ = [
    "AddL2",
    "AverageIterates",
    "DecoupledDecay",
    "EmaMomentum",
    "FlipSign",
    "HeavyBall",
    "Rule",
    "ScaleByAdadelta",
    "ScaleByAdafactor",
    "ScaleByAdagrad",
    "ScaleByAdam",
    "ScaleByAdamax",
    "ScaleByDecayedLR",
    "ScaleByEta",
    "ScaleByLR",
    "ScaleByMuon",
    "ScaleByNAdam",
    "ScaleByRAdam",
    "ScaleByRms",
    "ScaleByRprop",
    "Transform",
    "absolute",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "advance",
    "asgd",
    "chain",
    "clip",
    "ema",
    "ema_momentum",
    "maximum",
    "muon",
    "nadam",
    "radam",
    "rmsprop",
    "rprop",
    "sgd",
    "sign",
    "sqrt",
    "where",
]
