"""Drop-in ``torch.optim`` optimizers that execute descentlab's rules.

Same class names, argument names, defaults, ``param_groups``, ``state_dict`` keys and
scheduler behaviour as ``torch.optim``: swapping the import is enough, and a
``state_dict`` saved by ``torch.optim.Adam`` resumes in ``descentlab.torch.Adam`` (and back).

Example:
    >>> import torch
    >>> from descentlab.torch import Adam
    >>> model = torch.nn.Linear(3, 1)
    >>> opt = Adam(model.parameters(), lr=1e-2)
    >>> loss = model(torch.ones(2, 3)).pow(2).mean()
    >>> loss.backward()
    >>> opt.step()
    >>> opt.zero_grad()
"""

import contextlib
import sys
from typing import Any

from torch.optim import (
    LBFGS,  # torch's own class: a closure-driven line-search method, not an update rule
    Optimizer,  # torch's own base class, for type hints and user-written optimizers
    SparseAdam,  # torch's own class: sparse gradients of embeddings
    lr_scheduler,  # torch's own module (schedulers drive any torch.optim.Optimizer)
    swa_utils,  # torch's own module
)

from .adagrad import Adadelta, Adagrad
from .adam import Adam, Adamax, AdamW, NAdam, RAdam
from .asgd import ASGD, Rprop
from .matrix import Adafactor, Muon
from .optimizer import RuleOptimizer
from .rmsprop import RMSprop
from .sgd import SGD, Momentum

# type[Any]: each class has torch's own constructor signature, which no common type states
BY_NAME: dict[str, type[Any]] = {
    c.info.name: c
    for c in (
        SGD,
        Momentum,
        RMSprop,
        Adam,
        AdamW,
        Adagrad,
        Adadelta,
        Adamax,
        RAdam,
        NAdam,
        ASGD,
        Rprop,
        Adafactor,
        Muon,
    )
}
"""descentlab's own drop-ins by registry name (``descentlab list``), for the lab and tools."""

# ``from descentlab.torch.lr_scheduler import StepLR`` gets torch's own module, not a copy.
sys.modules[f"{__name__}.lr_scheduler"] = lr_scheduler
sys.modules[f"{__name__}.swa_utils"] = swa_utils

__all__ = [
    "ASGD",
    "BY_NAME",
    "LBFGS",
    "SGD",
    "Adadelta",
    "Adafactor",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Momentum",
    "Muon",
    "NAdam",
    "Optimizer",
    "RAdam",
    "RMSprop",
    "Rprop",
    "RuleOptimizer",
    "SparseAdam",
    "lr_scheduler",
    "swa_utils",
]

with contextlib.suppress(ImportError):  # torch's own function; not in every torch we support
    from torch.optim import swap_in_optimizer_params_and_state

    __all__ += ["swap_in_optimizer_params_and_state"]
