import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

# Training scripts that test_check_corpus.py runs under `descentlab check`, each in its own
# process; importing them here would train at collection time.
collect_ignore = ["check_corpus"]

# The default engine starts compiling in the background once a PROCESS has spent 20 s of
# eager stepping on one kernel: a whole test session would cross that at a moment that
# depends on the machine's speed. Tests see the eager engine; the background switch has
# its own tests (test_engine_background.py), which set the threshold themselves.
os.environ.setdefault("DESCENTLAB_COMPILE_AFTER", "-1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
