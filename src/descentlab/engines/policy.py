"""The engine policy: which engine runs what, and in which precision. Decided here only.

Every driver (the torch drop-ins, the NumPy API, the lab's batched runs, telemetry) asks
this module; none keeps its own threshold or dtype rule.

* **Engines.** The torch drop-ins offer :data:`TORCH_ENGINES`, the NumPy object API
  :data:`NUMPY_ENGINES`. ``"auto"`` compiles a torch param group from
  :data:`AUTO_TENSORS` tensors or :data:`AUTO_NUMEL` elements on (below, compiling costs
  more than it can save), and a NumPy array from :data:`NUMPY_AUTO_NUMEL` elements on.
* **Size classes of the compiled engine.** Tensors under :data:`SMALL` elements run their
  loop on one thread, larger ones split it across threads; :data:`CHUNK` tensors of a class
  are stepped by one compiled call.
* **Precision.** 16-bit floats (:func:`is_low_precision`) are computed in float32 and
  rounded once per step (``eps=1e-8`` is 0 in float16); the state keeps the parameter's
  dtype. Coefficients travel in the precision of the arithmetic (:func:`compute_dtype`):
  a float64 coefficient would make a float32 kernel compute in double precision, at half
  the vector width, while torch's eager kernels round Python-float scalars the same way.

>>> import torch
>>> compute_dtype(torch.bfloat16), compute_dtype(torch.float64)
(torch.float32, torch.float64)
>>> import numpy as np
>>> compute_dtype(np.dtype(np.float16))
dtype('float32')
>>> torch_group_compiles("auto", tensors=3, numel=100), torch_group_compiles("compiled", 3, 100)
(False, True)
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

__all__ = [
    "AUTO_NUMEL",
    "AUTO_TENSORS",
    "CHUNK",
    "EAGER_BATCH",
    "EAGER_PIECE",
    "EAGER_SPLIT",
    "NUMPY_AUTO_NUMEL",
    "NUMPY_ENGINES",
    "SMALL",
    "TORCH_ENGINES",
    "compute_dtype",
    "eager_batch",
    "eager_split",
    "is_low_precision",
    "numpy_array_compiles",
    "size_class",
    "torch_group_compiles",
]

TORCH_ENGINES = ("auto", "reference", "eager", "compiled", "flat", "flat-eager")
"""The drop-ins' ``engine=`` choices; every name but ``"auto"`` counts in ``engine_counts``."""
NUMPY_ENGINES = ("auto", "reference", "compiled")
"""The NumPy object API's ``engine=`` choices."""

AUTO_TENSORS = 16
AUTO_NUMEL = 1 << 16
NUMPY_AUTO_NUMEL = 1 << 20

EAGER_BATCH = {"cpu": 1 << 17, "other": 1 << 24}
"""Elements stepped by one call of the eager engine, by device type. On a CPU the call's
operations then run while its tensors are still in the core's cache (512 KiB per float32
array: measured on 2 cores, a 74-tensor stack steps in 0.93x torch's for-loop time with
batches of 64k-256k elements, 1.08x with 1M, 1.33x with all at once); on an accelerator
fewer, larger calls launch fewer kernels. Either bounds the call's temporaries."""
EAGER_SPLIT = {"cpu": 1 << 21, "other": None}
"""Elements above which the eager engine cuts a tensor into pieces of :data:`EAGER_PIECE`
elements, by device type (None: never). On a CPU a tensor that large no longer has its
arrays in the shared cache from one operation of the rule to the next, and its temporaries
are fresh pages every step; in pieces they are neither. Measured on 2 cores against torch's
for-loop, AdamW 1 x 10M: 2.8x in pieces of 256k, 2.5x of 128k, 1.4x whole; 4 x 2.5M: 2.6x
against 1.9x whole; 8 x 1M: 2.1-2.2x split or not, so smaller tensors stay whole (each
piece is a call of its own). SGD with momentum, which makes no temporaries, gains little
(1.07x against 0.95x at 1 x 10M)."""
EAGER_PIECE = 1 << 18
"""Elements in each piece of a tensor cut by the eager engine (:data:`EAGER_SPLIT`)."""
SMALL = 1 << 15
CHUNK = {"small": 16, "large": 4}

_LOW_TORCH = (torch.float16, torch.bfloat16)
_LOW_NUMPY = (np.dtype(np.float16),)


def is_low_precision(dtype: Any) -> bool:
    """A 16-bit float (torch's float16/bfloat16, NumPy's float16): computed in float32."""
    if isinstance(dtype, torch.dtype):
        return dtype in _LOW_TORCH
    return np.dtype(dtype) in _LOW_NUMPY


def compute_dtype(dtype: Any) -> Any:
    """The precision of a rule's arithmetic, and of its coefficients, for ``dtype`` values:
    float32 for 16-bit floats, the dtype itself otherwise (torch or NumPy alike)."""
    if isinstance(dtype, torch.dtype):
        return torch.float32 if dtype in _LOW_TORCH else dtype
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype in _LOW_NUMPY else dtype


def torch_group_compiles(engine: str, tensors: int, numel: int) -> bool:
    """Does the compiled engine take a param group of ``tensors`` eligible tensors holding
    ``numel`` elements in all? (The flat engines and the reference decide for themselves.)"""
    if engine == "auto" and torch_group_mode(engine) == "reference":
        return False
    if engine == "reference":
        return False
    if engine == "auto":
        return tensors >= AUTO_TENSORS or numel >= AUTO_NUMEL
    return True


def eager_batch(device: Any) -> int:
    """:data:`EAGER_BATCH` for a torch device."""
    return EAGER_BATCH["cpu" if getattr(device, "type", device) == "cpu" else "other"]


def eager_split(device: Any) -> int | None:
    """:data:`EAGER_SPLIT` for a torch device."""
    return EAGER_SPLIT["cpu" if getattr(device, "type", device) == "cpu" else "other"]


def torch_group_mode(engine: str) -> str:
    """How the drop-ins' fast path runs a group under ``engine``: ``"compiled"`` (compile at
    the first step and wait), ``"eager"`` (never compile) or ``"auto"`` (eager until a kernel
    compiled in the background is ready: :mod:`descentlab.engines.background`).

    ``DESCENTLAB_ENGINE`` (``eager`` or ``compiled``) forces the choice that ``"auto"``
    makes, for every optimizer of the process."""
    if engine != "auto":
        return engine
    forced = os.environ.get("DESCENTLAB_ENGINE", "").strip()
    if forced in ("", "auto"):
        return "auto"
    if forced not in ("eager", "compiled", "reference"):
        raise ValueError(
            f"DESCENTLAB_ENGINE={forced!r} is not an engine; choose one of: "
            "auto, eager, compiled, reference"
        )
    return forced


def numpy_array_compiles(engine: str, array: np.ndarray) -> bool:
    """Does the NumPy object API step ``array`` with one compiled in-place pass?"""
    if engine == "reference" or not array.flags.c_contiguous or not array.flags.writeable:
        return False
    return engine == "compiled" or array.size >= NUMPY_AUTO_NUMEL


def size_class(numel: int) -> str:
    """The compiled engine's size class of a tensor: ``"small"`` or ``"large"``."""
    return "small" if numel < SMALL else "large"
