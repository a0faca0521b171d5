"""How a rule is executed: per tensor (the reference) or over flat buffers.

Engines never contain math: they call :meth:`descentlab.rules.Rule.update`.
"""

from .flat import FlatBucket, flat_update
from .reference import apply_reference

ENGINES = ("auto", "reference", "flat", "flat-eager")

__all__ = ["ENGINES", "FlatBucket", "apply_reference", "flat_update"]
