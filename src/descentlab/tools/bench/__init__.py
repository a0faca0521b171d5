"""Step-time and memory benchmark: descentlab against torch.optim, side by side in one run.

**Step time** is measured on the loop users write::

    loss.backward()        # autograd hands every parameter a NEW gradient tensor
    opt.step()
    opt.zero_grad()        # set_to_none=True, torch's default

Before each timed step every parameter gets a fresh gradient tensor (a clone of a fixed
gradient, as autograd makes a new tensor each backward; the cloning is not timed), then
``step()`` + ``zero_grad()`` are timed. Every variant of a case is timed round-robin (one
step each, the starting variant rotating, repeated), so machine load hits them alike. The
first step of each variant (where descentlab's compiled engines compile) is timed apart
and reported; a few warm-up steps follow before the timed ones. Results are medians, ratios
to torch (``fused`` where torch has a fused CPU path, else its fastest) and effective GB/s
against the streaming bandwidth measured in the same run (an in-place ``a += s * b``).

**Peak memory** (``ru_maxrss``) is measured in a fresh process per variant and model size:
a stack of ``nn.Linear`` layers trained a few steps with AdamW on ``model(x).sum()``, so the
gradients come from autograd. Two sizes give the slope (MiB per million parameters) and the
fixed cost (intercept: the interpreter, torch, and whatever the optimizer imports).

The package holds one part per module: :mod:`.layouts` (the parameter layouts),
:mod:`.steps` (the step timing), :mod:`.overhead` (telemetry's cost), :mod:`.memory` and
:mod:`.memory_child` (peak memory, one fresh process each), :mod:`.numpy_adam` (the NumPy
step against the seed's), :mod:`.suite` (the run of them all) and :mod:`.report` (the
tables and the JSON file).
"""

from __future__ import annotations

from .layouts import LAYOUT_NAMES, Layout, human, layout_key, layouts
from .memory import memory
from .numpy_adam import numpy_vs_seed
from .overhead import telemetry_overhead
from .report import print_report, save
from .steps import ALIASES, DEFAULT, TORCH, VARIANTS, stream_bandwidth
from .suite import MAX_SCALE, check_args, check_out, run

__all__ = [
    "ALIASES",
    "DEFAULT",
    "LAYOUT_NAMES",
    "MAX_SCALE",
    "TORCH",
    "VARIANTS",
    "Layout",
    "check_args",
    "check_out",
    "human",
    "layout_key",
    "layouts",
    "memory",
    "numpy_vs_seed",
    "print_report",
    "run",
    "save",
    "stream_bandwidth",
    "telemetry_overhead",
]
