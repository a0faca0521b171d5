"""Nothing the user owns is written over, and absurd sizes are refused before anything
runs: each case is a one-line error with exit code 2 from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from descentlab.lab import LabError, compare
from descentlab.lab.files import MARKER
from descentlab.reproduce import reproduce
from descentlab.tools import cli

CHEAP = ["--workload", "ravine", "--optimizers", "sgd", "--lr", "0.1", "--seeds", "1"]


def _users_files(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {"report.md": "my notes\n", "index.html": "<p>mine</p>", "config.json": '{"mine": 1}'}
    for name, text in files.items():
        (folder / name).write_text(text)
    return files


def _one_line_error(capsys: pytest.CaptureFixture[str], command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"descentlab {command}: error: "), err
    assert "\n" not in err and "Traceback" not in err
    return err


def test_an_empty_out_is_refused_not_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    mine = _users_files(tmp_path)
    assert cli.main(["compare", *CHEAP, "--steps", "3", "--out", ""]) == 2
    assert "output folder name is empty" in _one_line_error(capsys, "compare")
    assert cli.main(["reproduce", "--quick", "--only", "seed-code", "--out", " "]) == 2
    _one_line_error(capsys, "reproduce")
    assert {name: (tmp_path / name).read_text() for name in mine} == mine
    assert not (tmp_path / MARKER).exists()


@pytest.mark.parametrize("command", ["compare", "reproduce"])
def test_a_folder_of_the_users_files_is_refused_and_left_alone(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"
    mine = _users_files(out)
    args = [*CHEAP, "--steps", "3"] if command == "compare" else ["--quick", "--only", "seed-code"]
    assert cli.main([command, *args, "--out", str(out)]) == 2
    err = _one_line_error(capsys, command)
    assert "already holds files descentlab did not write" in err and "report.md" in err
    assert sorted(p.name for p in out.iterdir()) == sorted(mine)
    assert {name: (out / name).read_text() for name in mine} == mine


def test_a_report_folder_resumes_and_another_kind_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "report"
    kw = dict(workloads=["ravine"], optimizers=["sgd"], lrs=[0.1], seeds=1, steps=3)
    compare(out=out, **kw)
    assert json.loads((out / MARKER).read_text()) == {"kind": "compare"}
    again = compare(out=out, **kw)  # resumes: the same folder is ours
    assert again.folder == out
    with pytest.raises(LabError, match="holds a descentlab compare report"):
        reproduce(out, quick=True, only=["seed-code"])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert compare(out=empty, **kw).folder == empty  # an empty folder is fine
    file = tmp_path / "a-file"
    file.write_text("x")
    with pytest.raises(LabError, match="is a file"):
        compare(out=file, **kw)


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("compare", [*CHEAP, "--steps", "1000000000000"], "steps must be an integer from 1 to"),
        ("compare", [*CHEAP, "--epochs", "1e300"], "epochs must be a number > 0 and at most"),
        ("compare", [*CHEAP, "--epochs", "nan"], "epochs must be"),
        ("compare", [*CHEAP, "--epochs", "3"], "has no data to pass over, so epochs do not apply"),
        ("reproduce", ["--quick", "--seeds", "100000000000000000000"], "seeds must be an integer"),
        ("reproduce", ["--quick", "--only", ""], "no claim given; choose from:"),
        ("reproduce", ["--quick", "--only", " , "], "no claim given; choose from:"),
    ],
    ids=[
        "steps-1e12",
        "epochs-1e300",
        "epochs-nan",
        "epochs-ignored",
        "seeds-1e20",
        "only-empty",
        "only-commas",
    ],
)
def test_absurd_sizes_and_empty_choices_are_refused_before_anything_runs(
    command: str, args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert cli.main([command, *args, "--out", str(out)]) == 2
    assert message in _one_line_error(capsys, command)
    assert not out.exists()  # nothing written


def test_a_run_record_with_a_wrong_field_type_is_skipped_and_run_again(tmp_path: Path) -> None:
    """Valid JSON, wrong types (a list where a number belongs): the record is skipped with
    one warning and its run trained again, on every rerun without a traceback."""
    out = tmp_path / "r"
    kw = dict(workloads=["ravine"], optimizers=["sgd"], lrs=[0.1], seeds=1, steps=3)
    first = compare(out=out, **kw)
    path = out / "runs.jsonl"
    row = json.loads(path.read_text().splitlines()[0])
    row["seconds"] = [1, 2]  # a list where a number belongs
    row["loss"] = "not a curve"
    path.write_text(json.dumps(row) + "\n")
    with pytest.warns(RuntimeWarning, match="skipped 1 unreadable line"):
        again = compare(out=out, **kw)
    assert [r["id"] for r in again.rows] == [r["id"] for r in first.rows]
    assert again.rows[0]["loss"] == first.rows[0]["loss"]  # trained again, same numbers


def test_a_corrupt_lr_range_cache_is_set_aside_and_recomputed(tmp_path: Path) -> None:
    from descentlab.lab import lrfind

    calls = []

    def run() -> lrfind.RangeTest:
        calls.append(1)
        return lrfind.RangeTest([1e-3, 1e-2], [1.0, 0.5], 1e-2, 1e-3)

    tmp_path.mkdir(exist_ok=True)
    for text in ('{"k": {"lrs": [1]', '{"k": {"lrs": "x", "losses": 1}}', "[1, 2]"):
        (tmp_path / "lr_range.json").write_text(text)
        with pytest.warns(RuntimeWarning, match="unreadable .* moved to lr_range.json.unreadable"):
            test = lrfind.cached_grid(tmp_path, "k", run)
        assert test.center == 1e-3
        assert (tmp_path / "lr_range.json.unreadable").read_text() == text  # kept, not lost
        assert json.loads((tmp_path / "lr_range.json").read_text())["k"]["center"] == 1e-3
    assert len(calls) == 3
    lrfind.cached_grid(tmp_path, "k", run)  # now readable: read back, not run
    assert len(calls) == 3


def test_a_full_disk_is_one_line_and_keeps_what_was_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno

    from descentlab.lab import files

    out = tmp_path / "r"
    real = files.write_atomic

    def full(path: Path, text: str) -> None:
        if path.name != files.MARKER:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, text)

    monkeypatch.setattr(files, "write_atomic", full)
    code = cli.main(["compare", *CHEAP, "--steps", "3", "--out", str(out)])
    err = _one_line_error(capsys, "compare")
    assert code == 1
    assert "No space left on device" in err and "run again to resume" in err
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))  # nothing torn
