"""descentlab: the gradient-descent family, each update rule written once.

* :mod:`descentlab.rules` - the math, pure functions of one array;
* :mod:`descentlab.torch` - drop-in ``torch.optim`` optimizers (``SGD``, ``Adam``...);
* :mod:`descentlab.numpy` - the same rules on NumPy arrays;
* :func:`list_optimizers` / :func:`get_optimizer` - the registry both drivers share;
* :func:`guard` - catches the training-loop pitfalls in any torch optimizer's loop
  (:mod:`descentlab.diagnostics.guards`);
* :func:`telemetry` - lr, gradient and update norms of any torch optimizer, sampled every N
  steps (:mod:`descentlab.diagnostics.telemetry`).
"""

from .diagnostics import PitfallWarning, guard, param_groups_for_decay, telemetry
from .optimizers import REGISTRY, OptimizerInfo, list_optimizers
from .optimizers import get as get_optimizer

__version__ = "0.1.0"

__all__ = [
    "REGISTRY",
    "OptimizerInfo",
    "PitfallWarning",
    "__version__",
    "get_optimizer",
    "guard",
    "list_optimizers",
    "param_groups_for_decay",
    "telemetry",
]
