"""The engine policy decides which engine runs what and in which precision; the drivers ask
it and keep no threshold of their own. Step counting and coefficient names have one rule."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import descentlab.torch as dt
from descentlab import numpy as dnp
from descentlab.engines import flat, policy
from descentlab.rules import Rule, ScaleByLR, advance, sgd


def test_the_drop_ins_auto_threshold_is_the_policys(monkeypatch: pytest.MonkeyPatch) -> None:
    def one_step() -> dict[str, int]:
        model = torch.nn.Linear(3, 2)  # 2 tensors, 8 elements: under both thresholds
        opt = dt.Adam(model.parameters(), lr=1e-2)
        model(torch.ones(4, 3)).sum().backward()
        opt.step()
        return opt.engine_counts["eager"] + opt.engine_counts["compiled"]  # the fast paths

    assert one_step() == 0
    monkeypatch.setattr(policy, "AUTO_TENSORS", 2)
    assert one_step() == 2


def test_the_numpy_auto_threshold_is_the_policys(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(flat, "run_flat", lambda *args, **kwargs: calls.append(1))
    w = np.zeros(4)
    dnp.Adam([w], lr=0.1).step([np.ones(4)])
    assert calls == []  # under the threshold: NumPy operations
    monkeypatch.setattr(policy, "NUMPY_AUTO_NUMEL", 4)
    dnp.Adam([w], lr=0.1).step([np.ones(4)])
    assert calls == [1]


@pytest.mark.parametrize(
    ("dtype", "wide"),
    [
        (torch.float16, torch.float32),
        (torch.bfloat16, torch.float32),
        (torch.float32, torch.float32),
        (torch.float64, torch.float64),
        (np.float16, np.float32),
        (np.float32, np.float32),
        (np.float64, np.float64),
    ],
)
def test_sixteen_bit_floats_compute_in_float32(dtype: object, wide: object) -> None:
    assert policy.is_low_precision(dtype) == (dtype in (torch.float16, torch.bfloat16, np.float16))
    got = policy.compute_dtype(dtype)
    assert got == (wide if isinstance(wide, torch.dtype) else np.dtype(wide))


def test_step_counts_advance_by_one_in_place_for_counters() -> None:
    assert advance(0) == 1 and advance(2.0) == 3.0
    t = torch.tensor(0.0, dtype=torch.float64)
    assert advance(t) is t and t.item() == 1.0
    a = np.zeros(3)
    assert advance(a) is a and a.tolist() == [1.0, 1.0, 1.0]


def test_coefficient_names_that_clash_raise_as_slot_names_do() -> None:
    rule = Rule("twice", (ScaleByLR(), ScaleByLR()))
    with pytest.raises(ValueError, match="clashing coefficient names \\['lr'\\]"):
        rule.coefficients({"lr": 0.1}, 1)
    ok = sgd(momentum=True)  # distinct names: the chain merges them
    assert set(ok.coefficients({"lr": 0.1, "momentum": 0.9, "dampening": 0.0}, 1)) == {
        "lr",
        "momentum",
        "hb_keep",
        "hb_take",
    }


def test_a_rule_pickled_into_another_process_hashes_as_one_built_there() -> None:
    """A rule keeps its hash (kernel and program lookups hash it many times a step), but a
    pickle carries the fields only: the compiling process, whose string hashes differ,
    finds the unpickled rule where it would find one it built itself."""
    import pickle
    import subprocess
    import sys

    rule = sgd(momentum=True, nesterov=True)
    hash(rule)  # kept from here on
    assert "_hash" not in pickle.loads(pickle.dumps(rule)).__dict__
    check = (
        "import pickle, sys\n"
        "from descentlab.rules import sgd\n"
        "got = pickle.loads(sys.stdin.buffer.read())\n"
        "fresh = sgd(momentum=True, nesterov=True)\n"
        "assert got == fresh and hash(got) == hash(fresh) and {fresh: 1}[got] == 1\n"
        "assert got.slots == fresh.slots and got.elementwise\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", check],
        input=pickle.dumps(rule),
        capture_output=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
