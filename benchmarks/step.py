"""Optimizer benchmark (same as ``descentlab bench``); never collected by pytest.

Times ``step()`` + ``zero_grad()`` with fresh gradient tensors each step, torch.optim's
for-loop/foreach/fused against descentlab's default and flat engines, round-robin in one
run, then measures peak RSS per variant in separate processes.

Run: python benchmarks/step.py [--scale 0.05] [--no-memory] [--out bench.json]
"""

import sys

from descentlab.tools.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
