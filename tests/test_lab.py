"""The lab: workload gradients, determinism, resume, divergence, the CLI end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from descentlab.lab import WORKLOADS, LabError, compare
from descentlab.lab.runner import run_one
from descentlab.lab.spec import Regime, parse_optimizer, parse_regime
from descentlab.lab.store import Store
from descentlab.lab.sweep import sweep
from descentlab.lab.training import RunSpec
from descentlab.tools import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_workload_gradient_matches_finite_differences(name: str) -> None:
    problem = WORKLOADS[name].build(0, dict(WORKLOADS[name].options))
    params = problem.params
    with torch.no_grad():  # move off any symmetric start (zeros, biases) first
        gen = torch.Generator().manual_seed(1)
        for p in params:
            p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    for p in params:
        p.grad = None
    idx = None if problem.n_train is None else torch.arange(min(16, problem.n_train))
    problem.loss(idx).backward()
    rng = np.random.default_rng(2)
    eps = 1e-6
    for p in params:
        flat, grad = p.data.view(-1), p.grad.view(-1)
        for i in rng.choice(flat.numel(), size=min(4, flat.numel()), replace=False):
            with torch.no_grad():
                old = flat[i].item()
                flat[i] = old + eps
                up = float(problem.loss(idx))
                flat[i] = old - eps
                down = float(problem.loss(idx))
                flat[i] = old
            numeric = (up - down) / (2 * eps)
            assert grad[i].item() == pytest.approx(numeric, rel=1e-5, abs=1e-7), (name, i)


def _spec(workload="digits-logreg", opt="adam", lr=1e-2, seed=0, regime="minibatch:32", steps=15):
    return RunSpec(workload, parse_optimizer(opt), lr, seed, parse_regime(regime), steps, 5)


def test_a_diverging_run_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    specs = [
        _spec("ravine", "sgd", 10.0, regime="full", steps=200),
        _spec("ravine", "sgd", 1e-2, regime="full", steps=20),
    ]
    rows = sweep(specs, {"ravine": WORKLOADS["ravine"].build}, tmp_path)
    assert rows[0]["diverged"] and len(rows[0]["loss"]) < 200
    assert not rows[1]["diverged"] and len(rows[1]["loss"]) == 20


def test_interrupted_sweep_resumes_to_the_same_table(tmp_path: Path) -> None:
    kw = dict(
        workloads=["digits-logreg"], optimizers=["sgd", "adam"], lrs=[1e-2, 1e-1], seeds=2, epochs=1
    )
    full = compare(out=tmp_path / "full", **kw)

    class Stop(Exception):
        pass

    calls = []

    def interrupt(spec, cached):  # kill the sweep after three finished runs
        calls.append(spec)
        if len(calls) == 3:
            raise Stop

    import importlib

    module = importlib.import_module("descentlab.lab.progress")  # where compare sweeps
    original = module.sweep_with
    module.sweep_with = lambda executor, specs, builds, folder, *rest: original(
        executor, specs, builds, folder, interrupt
    )
    try:
        with pytest.raises(Stop):
            compare(out=tmp_path / "resumed", **kw)
    finally:
        module.sweep_with = original
    store = Store(tmp_path / "resumed")
    assert len(store.load()) == 4  # sgd's batch: stored whole before its first run was reported
    with store.path.open("a") as f:  # a torn line from a killed write is skipped, not fatal
        f.write('{"id": "half')
    with pytest.warns(RuntimeWarning, match="skipped 1 unreadable line"):
        resumed = compare(out=tmp_path / "resumed", **kw)
    with pytest.warns(RuntimeWarning, match="skipped 1 unreadable line"):
        assert len(Store(tmp_path / "resumed").load()) == 8
    strip = lambda rows: [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]  # noqa: E731
    assert strip(resumed.summary) == strip(full.summary)


def test_equal_compute_across_regimes(tmp_path: Path) -> None:
    res = compare(
        workloads=["linreg"],
        optimizers=["sgd"],
        lrs=[1e-2],
        seeds=1,
        epochs=2,
        regimes=["full", "sgd", "minibatch:25"],
        out=tmp_path,
    )
    steps = {s["regime"]: s["steps"] for s in res.summary}
    assert steps == {"full": 2, "sgd": 200, "minibatch:25": 8}  # 100 samples, 2 epochs
    assert any("equal compute" in n for n in res.notes)


def test_user_model_with_a_dataloader(tmp_path: Path) -> None:
    torch.manual_seed(0)
    x, y = torch.randn(96, 5), torch.randint(0, 3, (96,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    before = [p.detach().clone() for p in model.parameters()]
    res = compare(
        model=model,
        data=loader,
        test_data=(x[:32], y[:32]),
        loss_fn=torch.nn.functional.cross_entropy,
        optimizers=["adam", "sgd"],
        lrs=[1e-2],
        seeds=2,
        epochs=3,
        out=tmp_path,
        name="mine",
    )
    assert {s["regime"] for s in res.summary} == {"minibatch:16"}
    assert all("final_acc" in s for s in res.summary)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_user_model_with_a_non_scalar_loss_is_refused(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 1)
    with pytest.raises(LabError, match="loss must be a scalar"):
        compare(
            model=model,
            data=(torch.randn(8, 3), torch.randn(8, 1)),
            loss_fn=lambda out, y: (out - y) ** 2,
            out=tmp_path,
        )
    assert not (tmp_path / "index.html").exists()


def test_cli_compare_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import matplotlib.image

    out = tmp_path / "report"
    code = cli.main(
        [
            "compare",
            "--workload",
            "ravine,digits-logreg",
            "--optimizers",
            "sgd:momentum=0.9,adam",
            "--lr",
            "1e-2,3e-2",
            "--seeds",
            "2",
            "--steps",
            "12",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "best learning rate" in printed and "index.html" in printed
    rows = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 2 * 2 * 2
    config = json.loads((out / "config.json").read_text())
    assert config["versions"]["torch"] == torch.__version__ and config["seeds"] == [0, 1]
    md = (out / "summary.md").read_text()
    assert "| ravine | full | adam |" in md and "sgd:momentum=0.9" in md
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") >= 5
    pngs = sorted((out / "plots").glob("*.png"))
    assert {p.name for p in pngs} >= {
        "ravine-trajectories.png",
        "ravine-curves.png",
        "digits-logreg-curves.png",
        "digits-logreg-lr-sensitivity.png",
    }
    for png in pngs:
        image = matplotlib.image.imread(png)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary) == 2 * 2 * 2  # workload x optimizer x lr


BAD = [
    (["--workload", "ravne"], "unknown workload 'ravne'; choose one of: ravine"),
    (["--optimizers", "adam,sdg"], "unknown optimizer 'sdg'; choose one of: sgd"),
    (["--optimizers", "sgd:momentum=-1"], "Invalid momentum value: -1"),
    (["--lr", "1e-3,fast"], "malformed learning rate 'fast'"),
    (["--lr", "-1"], "learning rate must be a finite number > 0"),
    (["--regime", "minibatch:0"], "bad regime 'minibatch:0'; choose full, sgd or minibatch:B"),
    (["--seeds", "0"], "seeds must be an integer from 1 to 1000"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[b[1][:24] for b in BAD])
def test_cli_bad_input_is_one_line_exit_2_and_writes_no_report(
    tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "r"
    proc = subprocess.run(
        [sys.executable, "-m", "descentlab", "compare", *args, "--steps", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (out / "index.html").exists() and not (out / "runs.jsonl").exists()


def test_cli_unwritable_output_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = subprocess.run(
        [sys.executable, "-m", "descentlab", "compare", "--out", str(blocker / "sub")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "cannot write to output folder" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_regime_parsing() -> None:
    assert parse_regime("full") == Regime("full")
    assert parse_regime("sgd").batch_size(100) == 1
    assert parse_regime("minibatch:64").batch_size(10) == 10
    assert parse_regime("full").batch_size(100) is None


def test_killed_cli_sweep_resumes_to_the_same_table(tmp_path: Path) -> None:
    import os
    import signal
    import time

    args = [
        sys.executable,
        "-m",
        "descentlab",
        "compare",
        "--workload",
        "digits-mlp",
        "--optimizers",
        "sgd,adam,rmsprop",
        "--lr",
        "grid",
        "--seeds",
        "2",
        "--epochs",
        "3",
        "--no-vectorize",  # one run at a time, so the kill lands between runs
    ]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [*args, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    runs = killed / "runs.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if runs.exists() and len(runs.read_bytes().splitlines()) >= 3:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up
    proc.wait()
    finished = len(Store(killed).load())
    assert 3 <= finished < 24, "the sweep was not killed mid-way"
    assert not (killed / "index.html").exists()
    assert subprocess.run([*args, "--out", str(killed)], capture_output=True).returncode == 0
    clean = tmp_path / "clean"
    assert subprocess.run([*args, "--out", str(clean)], capture_output=True).returncode == 0

    def table(folder: Path) -> list[dict]:
        rows = json.loads((folder / "summary.json").read_text())
        return [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]

    assert table(killed) == table(clean)
    with warnings.catch_warnings():  # a line torn by the kill, if any, is skipped with a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        assert len(Store(killed).load()) == 24


class _Sizes(torch.nn.Module):
    """A model that records the batch sizes it is called with."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.sizes = inner, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(x))
        out: torch.Tensor = self.inner(x)
        return out


def test_whole_sets_are_evaluated_in_chunks_with_the_same_outputs() -> None:
    from descentlab.lab.workloads import EVAL_CHUNK, forward

    problem = WORKLOADS["mnist1d-cnn"].build(0, {})
    model, x = _Sizes(problem.parts["model"]), problem.parts["x"]
    assert len(x) > 2 * EVAL_CHUNK
    with torch.no_grad():
        whole = model(x)
        chunked = forward(model, x)
    assert model.sizes == [len(x), EVAL_CHUNK, EVAL_CHUNK, EVAL_CHUNK, len(x) - 3 * EVAL_CHUNK]
    assert torch.equal(chunked, whole)  # each sample's output bit for bit
    model.sizes.clear()
    forward(model, x).sum().backward()  # with gradients: one pass (a training step)
    assert model.sizes == [len(x)]
    norm = _Sizes(torch.nn.Sequential(torch.nn.Linear(40, 4), torch.nn.BatchNorm1d(4)).double())
    with torch.no_grad():
        forward(norm, x)  # batch statistics: never split
        assert norm.sizes == [len(x)]
        norm.eval()
        forward(norm, x)  # running statistics: split
    assert norm.sizes[1:] == [EVAL_CHUNK] * 3 + [len(x) - 3 * EVAL_CHUNK]


def test_digits_are_read_as_scikit_learn_loads_them() -> None:
    from sklearn.datasets import load_digits

    from descentlab.lab.workloads import _load_digits

    x, y = _load_digits()
    d = load_digits()
    assert x.dtype == d.data.dtype and y.dtype == d.target.dtype
    assert np.array_equal(x, d.data) and np.array_equal(y, d.target)


def test_digits_are_read_without_importing_scikit_learn() -> None:
    code = (
        "import sys; from descentlab.lab.workloads import _load_digits; _load_digits(); "
        "print('sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_the_reproduce_helper_trains_an_lr_grid_as_one_batch() -> None:
    from descentlab.reproduce.common import lab_runs

    runs = lab_runs("ravine", "sgd", [0.01, 0.03], 2, "full", steps=8)
    assert [r["batch"] for rs in runs.values() for r in rs] == [4] * 4
    w = WORKLOADS["ravine"]
    spec = RunSpec("ravine", parse_optimizer("sgd"), 0.03, 1, parse_regime("full"), 8, 1,
                   tuple(sorted(w.options.items())))  # fmt: skip
    assert run_one(spec, w.build).loss == runs[0.03][1]["loss"]  # a landscape: bit for bit


def test_the_new_rules_train_in_compare_and_muon_on_matrices_only(tmp_path: Path) -> None:
    """torch.optim's other rules are compare specs too; Muon trains the bias-free digits
    models (every parameter a matrix) and is refused, in one line, on anything else."""
    res = compare(
        workloads=["digits-logreg:bias=0"],
        optimizers=["nadam", "asgd", "rprop", "adafactor", "muon"],
        lrs="grid",
        seeds=1,
        steps=6,
        out=tmp_path / "ok",
    )
    trained = {row["spec"]["optimizer"] for row in res.rows}
    assert trained == {"nadam", "asgd", "rprop", "adafactor", "muon"}
    assert all(math.isfinite(row["loss"][-1]) for row in res.rows)
    with pytest.raises(LabError, match=r"muon trains matrices only .* shape \(10,\)"):
        compare(
            workloads=["digits-logreg"],
            optimizers=["muon"],
            lrs=[0.01],
            seeds=1,
            steps=2,
            out=tmp_path / "refused",
        )


def test_rules_that_cannot_run_stacked_are_trained_one_by_one(tmp_path: Path) -> None:
    """Batches stack configurations as rows: Adafactor (row and column means of a matrix)
    and NAdam (a scalar per parameter) must not be batched; Adam is."""

    def batched_note(optimizers: list[str], out: str) -> bool:
        res = compare(workloads=["digits-logreg"], optimizers=optimizers, lrs=[1e-3, 1e-2],
                      seeds=1, steps=3, out=tmp_path / out)  # fmt: skip
        return any("trained in batches" in n for n in res.notes)

    assert batched_note(["adam"], "adam")
    assert not batched_note(["adafactor", "nadam"], "others")
