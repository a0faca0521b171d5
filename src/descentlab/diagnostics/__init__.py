"""Diagnostics: watching a training loop from the outside, never changing a number.

* :mod:`.guards` - :func:`guard`: training-loop pitfalls reported as they happen;
* :mod:`.telemetry` - :func:`telemetry`: what each (sampled) step did;
* :mod:`.check` - ``descentlab check -- python train.py``: every optimizer of an unmodified
  script guarded, findings summarized; :mod:`.protocol` is what the command and the script's
  start-up hook (``_site/sitecustomize.py``) agree on;
* :mod:`.hooks` - what the guard and telemetry share: step hooks, the update meter, norms,
  parameter names; :mod:`.zero_grad` - the one detector of ``.grad`` resets (zero_grad),
  read by the guard (gradients carried over) and telemetry (steps skipped);
* :mod:`.weight_decay` - which parameters decay (:func:`param_groups_for_decay`).
"""

from .guards import Finding, Guard, PitfallWarning, guard
from .telemetry import Sample, Telemetry, telemetry
from .weight_decay import param_groups_for_decay

__all__ = [
    "Finding",
    "Guard",
    "PitfallWarning",
    "Sample",
    "Telemetry",
    "guard",
    "param_groups_for_decay",
    "telemetry",
]
