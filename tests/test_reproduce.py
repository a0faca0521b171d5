"""`descentlab reproduce --quick`: verdicts consistent with the figures printed beside them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest

from descentlab.reproduce import BY_KEY, CLAIMS, FAILS, HOLDS, PARTLY, reproduce
from descentlab.reproduce.base import Claim, Criterion, Measurement, verdict


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reproduce")
    proc = subprocess.run(
        [sys.executable, "-m", "descentlab", "reproduce", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_every_claim_has_a_saved_result_and_a_section(quick: Path) -> None:
    report = (quick / "report.md").read_text()
    page = (quick / "index.html").read_text()
    for claim in CLAIMS:
        saved = json.loads((quick / "claims" / f"{claim.key}.json").read_text())
        assert saved["verdict"] in (HOLDS, FAILS, PARTLY)
        assert f"## {claim.title}" in report and claim.quote[:40] in report
        assert f'id="{claim.key}"' in page
    assert "torch 2." in report and "seeds 0..0" in report


def test_verdicts_follow_from_the_saved_figures(quick: Path) -> None:
    for claim in CLAIMS:
        saved = json.loads((quick / "claims" / f"{claim.key}.json").read_text())
        again, met = verdict(claim.criteria, saved["figures"])  # JSON keeps inf as Infinity
        assert again == saved["verdict"] and met == saved["met"], claim.key


def test_report_prints_the_figures_the_verdict_came_from(quick: Path) -> None:
    """Parse the printed figures back from report.md and re-judge: the same verdicts."""
    report = (quick / "report.md").read_text()
    sections = report.split("\n## ")[1:]
    assert len(sections) == len(CLAIMS)
    for claim, text in zip(CLAIMS, sections, strict=True):
        printed = {}
        for name, value in re.findall(r"^\| (.+?) \| ([^|]+) \|$", text, flags=re.M):
            try:
                printed[name] = float(value)
            except ValueError:
                continue
        printed_verdict = re.search(r"\*\*Verdict: (.+?)\.\*\*", text).group(1)
        # the printed values are rounded to 4 digits: re-judge only where no figure sits
        # within rounding of a threshold, which is every criterion here by a wide margin
        assert verdict(claim.criteria, printed)[0] == printed_verdict, claim.key
        boxes = re.findall(r"^- \[([ x])\]", text, flags=re.M)
        assert len(boxes) == len(claim.criteria)
        expected = {HOLDS: {"x"}, FAILS: {" "}, PARTLY: {"x", " "}}[printed_verdict]
        assert set(boxes) == expected, claim.key


def test_plots_are_images(quick: Path) -> None:
    pngs = list((quick / "plots").glob("*.png"))
    assert len(pngs) >= 8
    for png in pngs:
        assert matplotlib.image.imread(png).ndim == 3


def test_a_rerun_reuses_finished_claims_and_redoes_a_missing_one(quick: Path) -> None:
    seen: list[str] = []
    (quick / "claims" / "zero-grad.json").unlink()
    reproduce(quick, quick=True, only=["zero-grad", "seed-code"], progress=seen.append)
    assert seen[0] == "zero-grad: measuring" and "seed-code: reused" in seen


def test_verdict_rules() -> None:
    crit = (Criterion("a > 1", lambda f: f["a"] > 1), Criterion("b > 1", lambda f: f["b"] > 1))
    assert verdict(crit, {"a": 2, "b": 2})[0] == HOLDS
    assert verdict(crit, {"a": 2, "b": 0})[0] == PARTLY
    assert verdict(crit, {"a": 0, "b": 0})[0] == FAILS
    assert verdict(crit, {"a": 2}) == (PARTLY, [True, False])  # a missing figure is not met
    claim = Claim("k", "t", "q", "e", crit, lambda ctx: Measurement({"a": 0, "b": 0}))
    assert claim.key == "k"


def test_claim_keys_are_unique_and_cover_the_issue() -> None:
    assert len(BY_KEY) == len(CLAIMS)
    assert {
        "regimes",
        "momentum-ravine",
        "momentum-saddle",
        "rmsprop-scales",
        "adam-composition",
        "bias-correction",
        "adam-vs-sgd",
        "finetune-lr",
        "zero-grad",
        "stale-momentum",
        "adam-l2-vs-adamw",
        "seed-code",
        "key-properties",
    } <= set(BY_KEY)


def test_bad_only_exits_2_with_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "descentlab",
            "reproduce",
            "--only",
            "momentm",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "unknown claim 'momentm'" in proc.stderr


def test_a_relative_out_folder_resumes_when_named_absolutely(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    reproduce("rel", quick=True, only=["rmsprop-scales", "key-properties"])
    seen: list[str] = []
    reproduce(
        tmp_path / "rel",
        quick=True,
        only=["rmsprop-scales", "key-properties"],
        progress=seen.append,
    )
    assert seen == ["rmsprop-scales: reused", "key-properties: reused"]
    page = (tmp_path / "rel" / "index.html").read_text()
    assert "data:image/png;base64," in page
    assert (
        "rmsprop-scales: holds" in (tmp_path / "rel" / "report.md").read_text()
    )  # the table cites the verdict it rests on
