"""How a rule is executed: per tensor (the reference) or over flat buffers.

Engines never contain math: they call :meth:`descentlab.rules.Rule.update`.
"""

from .compiled import GroupPlan
from .flat import FlatBucket, flat_update
from .reference import apply_reference

ENGINES = ("auto", "reference", "compiled", "flat", "flat-eager")

__all__ = ["ENGINES", "FlatBucket", "GroupPlan", "apply_reference", "flat_update"]
