"""descentlab: the gradient-descent family, each update rule written once.

* :mod:`descentlab.rules` - the math, pure functions of one array;
* :mod:`descentlab.torch` - drop-in ``torch.optim`` optimizers (``SGD``, ``Adam``...);
* :mod:`descentlab.numpy` - the same rules on NumPy arrays;
* :func:`list_optimizers` / :func:`get_optimizer` - the registry both drivers share.
"""

from .optimizers import REGISTRY, OptimizerInfo, list_optimizers
from .optimizers import get as get_optimizer

__version__ = "0.1.0"

__all__ = ["REGISTRY", "OptimizerInfo", "__version__", "get_optimizer", "list_optimizers"]
