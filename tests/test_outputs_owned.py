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
        ("reproduce", ["--quick", "--seeds", "100000000000000000000"], "seeds must be an integer"),
        ("reproduce", ["--quick", "--only", ""], "no claim given; choose from:"),
        ("reproduce", ["--quick", "--only", " , "], "no claim given; choose from:"),
    ],
    ids=["steps-1e12", "epochs-1e300", "epochs-nan", "seeds-1e20", "only-empty", "only-commas"],
)
def test_absurd_sizes_and_empty_choices_are_refused_before_anything_runs(
    command: str, args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert cli.main([command, *args, "--out", str(out)]) == 2
    assert message in _one_line_error(capsys, command)
    assert not out.exists()  # nothing written
