"""Input checks before any work, and the results store: corrupt lines, concurrent writers,
strict JSON, and user models that never share runs."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
from pathlib import Path
from typing import Any

import pytest
import torch

from descentlab.lab import compare
from descentlab.lab.store import Store
from descentlab.tools import cli

# cheap settings first: a bad value given after them replaces the good one
BASE = ["--workload", "ravine", "--optimizers", "sgd", "--lr", "0.1", "--seeds", "1"]

BAD_COMPARE = [
    (["--workload", "ravine:kapa=100"], "unknown option 'kapa' for workload 'ravine'; valid"),
    (["--workload", "ravine:kappa=abc"], "option kappa must be a finite number > 0"),
    (["--workload", "ravine:kappa=-1"], "option kappa must be a finite number > 0"),
    (["--workload", "ravine:noise=-0.5"], "option noise must be a finite number >= 0"),
    (["--workload", "ravine:noise=nan"], "option noise must be a finite number >= 0"),
    (["--workload", "noisy-quadratic:samples=2.5"], "option samples must be an integer >= 1"),
    (["--workload", "linreg:kappa=1"], "valid options: none"),
    (["--workload", ""], "no workload given; choose from: ravine"),
    (["--optimizers", ""], "no optimizer given"),
    (["--lr", ""], "no learning rate given"),
    (["--regime", ""], "no regime given; choose full, sgd or minibatch:B"),
    (["--steps", "0"], "steps must be an integer from 1 to 10,000,000"),
    (["--steps", "-5"], "steps must be an integer from 1 to 10,000,000"),
    (["--steps", "abc"], "argument --steps: invalid int value"),
    (["--epochs", "nan"], "epochs must be a number > 0 and at most 100,000"),
    (["--epochs", "0"], "epochs must be a number > 0 and at most 100,000"),
    (["--steps", "3", "--epochs", "1"], "not allowed with argument"),
    (["--seeds", "100000000"], "seeds must be an integer from 1 to 1000"),
    (["--optimizers", "adam:betas=0.9/"], "expected betas=0.9/0.999"),
    (["--optimizers", "adam:betas=(0.9,0.99)"], "expected betas=0.9/0.999"),
    (["--optimizers", "adam:betas=a/b"], "expected betas=0.9/0.999"),
]


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def _one_line_exit_2(code: int, err: str, message: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"), BAD_COMPARE, ids=[" ".join(b[0]) for b in BAD_COMPARE]
)
def test_compare_bad_input_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    out = tmp_path / "r"
    code, err = _cli(["compare", *BASE, *args, "--out", str(out)], capsys)
    _one_line_exit_2(code, err, message)
    assert not out.exists() or not any(out.iterdir())


TINY_BENCH = ["--optimizers", "adam", "--layouts", "5000 x 1k", "--scale", "0.002"]
BAD_BENCH = [
    (["--reps", "0"], "--reps must be an integer >= 1"),
    (["--scale", "0"], "--scale must be a number with 0 < scale"),
    (["--scale", "nan"], "--scale must be a number with 0 < scale"),
    (["--warmup", "-1"], "--warmup must be an integer >= 0"),
    (["--memory-jobs", "0"], "--memory-jobs must be an integer >= 1"),
    (["--reps", "x"], "argument --reps: invalid int value"),
]


@pytest.mark.parametrize(("args", "message"), BAD_BENCH, ids=[" ".join(b[0]) for b in BAD_BENCH])
def test_bench_bad_input_is_refused_before_the_benchmark(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    out = tmp_path / "b.json"
    argv = ["bench", *TINY_BENCH, "--reps", "1", "--no-memory", *args, "--out", str(out)]
    code, err = _cli(argv, capsys)
    _one_line_exit_2(code, err, message)
    assert not out.exists()


def test_bench_unwritable_out_is_refused_before_the_benchmark(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from descentlab.tools import bench

    def no_run(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise AssertionError("the benchmark ran before --out was checked")

    monkeypatch.setattr(bench, "run", no_run)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = blocker / "sub" / "b.json"
    code, err = _cli(["bench", *TINY_BENCH, "--reps", "1", "--out", str(out)], capsys)
    _one_line_exit_2(code, err, "is not a directory")


@pytest.mark.parametrize("command", ["compare", "bench"])
def test_help_shows_defaults(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert exc.value.code == 0
    assert ("--reps REPS timed steps per variant (>= 1) (default: 15)" in text) or (
        "--seeds SEEDS number of seeds, 1 to 1000 (default: 3)" in text
    )


# ------------------------------------------------------------------------------ the store

KW: dict[str, Any] = dict(workloads=["ravine"], optimizers=["sgd"], lrs=[1e-2, 3e-2], seeds=2)


def test_a_corrupt_middle_line_is_skipped_and_every_good_run_kept(tmp_path: Path) -> None:
    first = compare(out=tmp_path, steps=5, **KW)
    path = tmp_path / "runs.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) == 4
    lines[1] = b'{"id": "0123", "spec": {"lr": oops\n'  # damaged in the middle
    path.write_bytes(b"".join(lines))
    with pytest.warns(RuntimeWarning, match="skipped 1 unreadable line"):
        again = compare(out=tmp_path, steps=5, **KW)
    after = path.read_bytes().splitlines(keepends=True)
    assert after[:4] == lines  # nothing cut: the good runs after the damage are still there
    assert len(after) == 5  # only the damaged run was trained again
    with pytest.warns(RuntimeWarning, match="skipped 1 unreadable line"):
        assert len(Store(tmp_path).load()) == 4
    strip = lambda rows: [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]  # noqa: E731
    assert strip(again.summary) == strip(first.summary)


def _compare_into(folder: str, barrier: Any) -> None:
    barrier.wait()
    compare(out=folder, steps=40, **{**KW, "lrs": [1e-3, 3e-3, 1e-2, 3e-2], "seeds": 3})


def test_two_processes_writing_into_one_folder_never_duplicate_a_run(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_compare_into, args=(str(tmp_path), barrier)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0, 0]
    ids = [json.loads(line)["id"] for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert len(ids) == 4 * 3 and len(set(ids)) == len(ids)
    assert len(json.loads((tmp_path / "summary.json").read_text())) == 4


def _strict(text: str) -> Any:
    def refuse(token: str) -> Any:
        raise AssertionError(f"bare {token} in a JSON file")

    return json.loads(text, parse_constant=refuse)


def test_files_are_strict_json_and_non_finite_numbers_read_back(tmp_path: Path) -> None:
    kw = dict(workloads=["ravine"], optimizers=["sgd"], lrs=[10.0], seeds=1, steps=60)
    first = compare(out=tmp_path, **kw)  # lr 10 on the ravine diverges
    row = first.rows[0]
    assert row["diverged"] and any(v != v for v in (e["train_loss"] for e in row["evals"]))
    for line in (tmp_path / "runs.jsonl").read_text().splitlines():
        _strict(line)
    for name in ("summary.json", "config.json"):
        _strict((tmp_path / name).read_text())
    stored = Store(tmp_path).load()[row["id"]]
    same = lambda a, b: a == b or (a != a and b != b)  # noqa: E731
    assert all(same(a, b) for a, b in zip(stored["loss"], row["loss"], strict=True))
    assert all(
        same(a["train_loss"], b["train_loss"])
        for a, b in zip(stored["evals"], row["evals"], strict=True)
    )
    resumed = compare(out=tmp_path, **kw)  # read back, not run again
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == 1
    assert json.dumps(resumed.summary) == json.dumps(first.summary)


def test_two_user_models_in_one_folder_each_get_their_own_runs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    x, y = torch.randn(64, 3), torch.randn(64, 1)
    kw = dict(data=(x, y), loss_fn=torch.nn.functional.mse_loss, optimizers=["sgd"], lrs=[1e-2])
    a = torch.nn.Linear(3, 1)
    b = torch.nn.Linear(3, 1)  # same architecture, other initial weights
    c = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    res_a = compare(model=a, seeds=1, epochs=2, out=tmp_path, **kw)
    res_b = compare(model=b, seeds=1, epochs=2, out=tmp_path, **kw)
    res_c = compare(model=c, seeds=1, epochs=2, out=tmp_path, **kw)
    runs = tmp_path / "runs.jsonl"
    assert len(runs.read_text().splitlines()) == 3
    ids = {res.rows[0]["id"] for res in (res_a, res_b, res_c)}
    assert len(ids) == 3
    assert res_a.rows[0]["loss"] != res_b.rows[0]["loss"]
    res_y = compare(model=a, seeds=1, epochs=2, out=tmp_path, **{**kw, "data": (x, -y)})
    assert res_y.rows[0]["id"] not in ids  # other data, other runs
    assert compare(model=a, seeds=1, epochs=2, out=tmp_path, **kw).rows == res_a.rows
    assert len(runs.read_text().splitlines()) == 4  # the same model and data reuse their run


def test_curves_with_non_finite_or_huge_values_round_trip_through_the_fast_path() -> None:
    """Lists of finite numbers are copied whole; anything else goes element by element
    (a NaN, an infinity, finite values whose sum overflows, strings, containers)."""
    from descentlab.lab.store import from_json, to_json

    nan, inf = float("nan"), float("inf")
    value = {
        "plain": [1.0, 2, -3.5],
        "nan": [1.0, nan],
        "inf": [-inf, 2.0],
        "huge": [1e308, 1e308],  # finite, but their sum is not: the slow path, same result
        "points": [(1.0, 2.0), (nan, 0.0)],
        "evals": [{"step": 1, "train_loss": inf}],
        "mixed": [1.0, "a"],
    }
    text = json.dumps(to_json(value), allow_nan=False)
    assert _strict(text)["nan"] == [1.0, "NaN"] and _strict(text)["huge"] == [1e308, 1e308]
    back = from_json(json.loads(text))
    assert back["plain"] == [1.0, 2, -3.5] and back["huge"] == [1e308, 1e308]
    assert back["nan"][1] != back["nan"][1] and back["inf"] == [-inf, 2.0]
    assert back["points"][0] == [1.0, 2.0] and back["points"][1][0] != back["points"][1][0]
    assert back["evals"] == [{"step": 1, "train_loss": inf}] and back["mixed"] == [1.0, "a"]
    curve = [0.5, 0.25]
    assert from_json(curve) is curve  # the fast path: a finite curve is taken whole
    assert from_json(back["nan"]) is not back["nan"]  # the slow path: element by element


def test_append_many_stores_each_run_once_and_keeps_the_first_record(tmp_path: Path) -> None:
    from descentlab.lab.training import Record

    mine = Store(tmp_path)
    other = Store(tmp_path)  # another process writing into the same folder
    first = other.append(Record(spec={"lr": 1.0}, id="a", loss=[1.0]))
    looks: list[int] = []
    real_refresh = mine.refresh
    mine.refresh = lambda: looks.append(1) or real_refresh()  # type: ignore[method-assign]
    rows = mine.append_many(
        [
            Record(spec={"lr": 2.0}, id="a", loss=[2.0]),  # "a" is taken: the first one wins
            Record(spec={"lr": 3.0}, id="b", loss=[float("nan")]),
            Record(spec={"lr": 4.0}, id="b", loss=[4.0]),  # twice in one call: stored once
        ]
    )
    assert rows[0] == first and rows[0]["loss"] == [1.0]
    assert rows[1] is rows[2] and rows[1]["loss"][0] != rows[1]["loss"][0]
    assert [json.loads(x)["id"] for x in (tmp_path / "runs.jsonl").read_text().splitlines()] == [
        "a",
        "b",
    ]
    assert Store(tmp_path).load().keys() == {"a", "b"}
    first_line = len((tmp_path / "runs.jsonl").read_bytes().splitlines(keepends=True)[0])
    assert other._offset == first_line  # its own line is not read back
    assert mine._offset == (tmp_path / "runs.jsonl").stat().st_size  # nor are mine:
    assert len(looks) == 1  # one look at the file, before writing, and none after
    assert other.refresh()["b"]["spec"] == {"lr": 3.0}  # the other store reads "b" back


def test_a_run_recorded_twice_reads_back_as_first_recorded(tmp_path: Path) -> None:
    """Two lines with one run id (two processes raced, or a file was concatenated): the
    first is the run, on a first read and on a later look alike."""
    from descentlab.lab.store import to_json
    from descentlab.lab.training import Record

    def line(lr: float, loss: float) -> str:
        row = to_json(dataclasses.asdict(Record(spec={"lr": lr}, id="a", loss=[loss])))
        return json.dumps(row) + "\n"

    path = tmp_path / "runs.jsonl"
    path.write_text(line(1.0, 1.0) + line(2.0, 2.0))
    store = Store(tmp_path)
    assert store.load()["a"]["spec"] == {"lr": 1.0} and store.done["a"]["loss"] == [1.0]
    with path.open("a") as f:  # a third record of "a" appended later
        f.write(line(3.0, 3.0))
    assert store.refresh()["a"]["spec"] == {"lr": 1.0}
    assert Store(tmp_path).load()["a"]["loss"] == [1.0]
