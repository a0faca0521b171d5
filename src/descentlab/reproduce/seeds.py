"""Figures over seeds, as the pitfall claims report them: the mean, and the fraction of
seeds in which a comparison goes the stated way (the spread is ``common.spread``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def mean(values: Sequence[float]) -> float:
    """The mean over seeds, as a float.

    >>> mean([1.0, 2.0, 4.0])
    2.3333333333333335
    """
    return float(np.mean(values))


def fraction(flags: Sequence[bool]) -> float:
    """The fraction of seeds in which a comparison went the stated way.

    >>> fraction([True, False, True, True])
    0.75
    """
    return float(np.mean(flags))
