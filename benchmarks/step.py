"""Optimizer step benchmark (same as ``descentlab bench``); never collected by pytest.

Run: python benchmarks/step.py [--scale 0.1] [--out bench.json]
"""

import sys

from descentlab.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
