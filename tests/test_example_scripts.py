"""PyTorch's example scripts end where torch.optim ends with only the import line swapped.

The scripts under ``example_scripts/`` are written as people copy them from
pytorch/examples: the MNIST convnet (Adadelta with StepLR), the LSTM time-sequence model
(LBFGS with a closure), a DCGAN (one Adam each for the discriminator and the generator)
and a VAE (Adam), on small seeded random data. Each runs twice in this process, each time
in a fresh namespace with float64 as the default dtype: once as written, once with ONLY
``import torch.optim as optim`` and ``from torch.optim.lr_scheduler import StepLR``
replaced by descentlab's lines. The swapped run must really use descentlab's classes, and
the final parameters and buffers, losses, outputs and optimizer states must agree to a
relative :data:`TOL`; changing the learning rate of the swapped run by one part in a
million moves them by far more, as the last test holds. The VAE's Adam is large enough
for the compiled engine, the others run on the reference engine."""

from __future__ import annotations

import contextlib
import functools
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

import descentlab.torch
from helpers import rel_err

SCRIPTS = Path(__file__).parent / "example_scripts"
SWAP = {  # the lines a user changes, and nothing else
    "import torch.optim as optim": "import descentlab.torch as optim",
    "from torch.optim.lr_scheduler import StepLR": (
        "from descentlab.torch.lr_scheduler import StepLR"
    ),
}
TOL = 1e-10
"""Relative agreement asked of every tensor and loss (float64 runs). Measured: the runs
agree to about 1e-15 (the rounding of different kernels, carried through training)."""


@dataclass(frozen=True)
class Script:
    """An example script and the names its namespace holds at the end."""

    file: str
    models: tuple[str, ...]
    optimizers: tuple[str, ...]
    results: tuple[str, ...]  # final losses and outputs

    def source(self) -> str:
        return (SCRIPTS / self.file).read_text()


CASES = [
    Script("mnist_cnn.py", ("model",), ("optimizer",), ("loss", "test_loss")),
    Script("time_sequence_lbfgs.py", ("seq",), ("optimizer",), ("loss", "test_loss", "pred")),
    Script("dcgan.py", ("netD", "netG"), ("optimizerD", "optimizerG"), ("errD", "errG", "fake")),
    Script("vae.py", ("model",), ("optimizer",), ("loss", "test_loss", "sample")),
]


def swapped(source: str) -> str:
    """``source`` with only the lines in :data:`SWAP` replaced (each kept line as it is)."""
    lines = [SWAP.get(line, line) for line in source.splitlines()]
    out = "\n".join(lines) + "\n"
    assert lines != source.splitlines(), "no import line was swapped"
    assert "torch.optim" not in out, "the script reaches torch.optim some other way"
    return out


@contextlib.contextmanager
def float64_one_thread_own_rng() -> Iterator[None]:
    """float64 as the default dtype, one intra-op thread, and the caller's RNG state back
    afterwards. One thread: the tensors are tiny, and a second core that something else
    keeps busy stalls torch's two-thread barriers (measured on 2 CPUs: the LBFGS script in
    1.1 s on one thread, 27 s on two)."""
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.set_default_dtype(dtype)
        torch.set_num_threads(threads)


def run(source: str, file: str) -> dict[str, Any]:
    """Run ``source`` as ``__main__`` in a fresh namespace and return that namespace."""
    namespace: dict[str, Any] = {"__name__": "__main__", "__file__": str(SCRIPTS / file)}
    code = compile(source, str(SCRIPTS / file), "exec")
    with float64_one_thread_own_rng(), contextlib.redirect_stdout(io.StringIO()):
        exec(code, namespace)
    return namespace


def assert_close(mine: Any, theirs: Any, what: str) -> None:
    """Equal to :data:`TOL` (tensors normwise, floats), exactly equal otherwise."""
    if isinstance(theirs, torch.Tensor):
        assert isinstance(mine, torch.Tensor), what
        assert mine.shape == theirs.shape and mine.dtype == theirs.dtype, what
        err = rel_err(mine, theirs)
        assert err <= TOL, f"{what}: relative error {err:.3g}"
    elif isinstance(theirs, float):
        err = abs(mine - theirs) / max(abs(theirs), 1e-300)
        assert err <= TOL, f"{what}: relative error {err:.3g} ({mine!r} vs {theirs!r})"
    elif isinstance(theirs, (list, tuple)):  # LBFGS keeps its history in lists
        assert type(mine) is type(theirs) and len(mine) == len(theirs), what
        for i, (a, b) in enumerate(zip(mine, theirs, strict=True)):
            assert_close(a, b, f"{what}[{i}]")
    else:
        assert mine == theirs, what


def assert_same_models_and_results(
    mine: dict[str, Any], theirs: dict[str, Any], script: Script
) -> None:
    for name in script.models:  # parameters and buffers (BatchNorm's running statistics)
        got, want = mine[name].state_dict(), theirs[name].state_dict()
        assert got.keys() == want.keys(), name
        for key in want:
            assert_close(got[key], want[key], f"{name}.{key}")
    for name in script.results:
        assert_close(mine[name], theirs[name], name)


@functools.cache
def runs(script: Script) -> tuple[dict[str, Any], dict[str, Any]]:
    """The namespaces of ``script`` run as written and run swapped (once per session)."""
    source = script.source()
    return run(source, script.file), run(swapped(source), script.file)


IDS = [s.file.removesuffix(".py") for s in CASES]


@pytest.mark.parametrize("script", CASES, ids=IDS)
def test_the_swapped_run_uses_descentlab_and_the_other_torch(script: Script) -> None:
    theirs, mine = runs(script)
    assert theirs["optim"] is torch.optim and mine["optim"] is descentlab.torch
    for name in script.optimizers:
        ref, opt = theirs[name], mine[name]
        assert type(ref).__module__.startswith("torch.optim"), name
        if isinstance(ref, torch.optim.LBFGS):  # re-exported: torch's own class
            assert type(opt) is torch.optim.LBFGS and descentlab.torch.LBFGS is torch.optim.LBFGS
        else:
            assert type(opt).__module__.startswith("descentlab"), name
            assert type(opt).__name__ == type(ref).__name__, name
            assert sum(opt.engine_counts.values()) > 0, f"{name}: descentlab stepped nothing"
    if "scheduler" in theirs:
        assert mine["StepLR"] is torch.optim.lr_scheduler.StepLR
        assert mine["scheduler"].optimizer is mine["optimizer"]
        lrs = (theirs["optimizer"].param_groups[0]["lr"], mine["optimizer"].param_groups[0]["lr"])
        assert lrs == (0.7**2, 0.7**2)  # two epochs of StepLR(step_size=1, gamma=0.7)


@pytest.mark.parametrize("script", CASES, ids=IDS)
def test_the_end_of_training_is_the_same(script: Script) -> None:
    theirs, mine = runs(script)
    assert_same_models_and_results(mine, theirs, script)


@pytest.mark.parametrize("script", CASES, ids=IDS)
def test_the_optimizer_state_dict_is_torch_s(script: Script) -> None:
    """What a checkpoint saves: torch.optim's groups, keys and values (the step counts
    apart: the next test)."""
    theirs, mine = runs(script)
    for name in script.optimizers:
        got, want = mine[name].state_dict(), theirs[name].state_dict()
        for group, ref in zip(got["param_groups"], want["param_groups"], strict=True):
            assert group.keys() >= ref.keys(), f"{name}: {ref.keys() - group.keys()}"
            for key in ref:
                assert_close(group[key], ref[key], f"{name} group {key}")
        assert got["state"].keys() == want["state"].keys(), name
        for index, ref in want["state"].items():
            assert got["state"][index].keys() == ref.keys(), f"{name} state {index}"
            for key, value in ref.items():
                if key != "step":
                    assert_close(got["state"][index][key], value, f"{name}.state[{index}].{key}")


# The VAE's Adam is large enough for the compiled engine (policy.AUTO_NUMEL): its saved step
# counts are torch's under a float64 default dtype too (the counter's advance was once lost).
@pytest.mark.parametrize("script", CASES, ids=IDS)
def test_the_saved_step_counts_are_torch_s(script: Script) -> None:
    theirs, mine = runs(script)
    for name in script.optimizers:
        got, want = mine[name].state_dict()["state"], theirs[name].state_dict()["state"]
        for index, ref in want.items():
            if "step" in ref:
                assert_close(got[index]["step"], ref["step"], f"{name}.state[{index}].step")


def test_the_comparison_sees_a_change_of_lr_by_one_part_in_a_million() -> None:
    """The tolerance is tight enough: the DCGAN swapped with lr=2.000002e-4 for 2e-4."""
    script = next(s for s in CASES if s.file == "dcgan.py")
    source = script.source()
    assert source.count("lr=2e-4") == 2
    theirs = runs(script)[0]
    mine = run(swapped(source).replace("lr=2e-4", "lr=2.000002e-4"), script.file)
    with pytest.raises(AssertionError, match="relative error"):
        assert_same_models_and_results(mine, theirs, script)
