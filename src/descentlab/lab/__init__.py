"""The lab: train the variants side by side on real workloads and report what happened.

>>> from descentlab.lab import list_workloads
>>> "rosenbrock" in list_workloads()
True
"""

from .compare import DEFAULT_OPTIMIZERS, DEFAULT_WORKLOADS, Result, compare, list_workloads
from .errors import LabError
from .export import load_runs, to_tensorboard
from .spec import parse_optimizer, parse_regime
from .workloads import WORKLOADS, Problem, Workload

__all__ = [
    "DEFAULT_OPTIMIZERS",
    "DEFAULT_WORKLOADS",
    "WORKLOADS",
    "LabError",
    "Problem",
    "Result",
    "Workload",
    "compare",
    "list_workloads",
    "load_runs",
    "parse_optimizer",
    "parse_regime",
    "to_tensorboard",
]
