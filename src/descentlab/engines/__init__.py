"""How a rule is executed: per tensor (the reference) or over flat buffers.

Engines never contain math: they call :meth:`descentlab.rules.Rule.update`. Which engine
runs what, and in which precision, is decided by :mod:`descentlab.engines.policy` alone.
"""

from .compiled import GroupPlan
from .flat import FlatBucket, flat_update
from .reference import apply_reference

__all__ = ["FlatBucket", "GroupPlan", "apply_reference", "flat_update"]
