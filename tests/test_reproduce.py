"""`descentlab reproduce --quick`: verdicts that follow from the figures printed beside them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest

from descentlab.lab.files import write_json
from descentlab.reproduce import BY_KEY, CLAIMS, HOLDS, reproduce
from descentlab.reproduce.base import VERDICTS, Claim, Statement, judge


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quick run, once, as a user starts it. No wall-clock limit: a loaded CI machine
    is slower, not wrong."""
    out = tmp_path_factory.mktemp("reproduce")
    proc = subprocess.run(
        [sys.executable, "-m", "descentlab", "reproduce", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def _saved(quick: Path, claim: Claim) -> dict:
    return json.loads((quick / "claims" / f"{claim.key}.json").read_text())


def _samples(saved: dict) -> dict[str, list[float]]:
    """The per-seed effects as saved (infinities and nan as text)."""
    return {k: [float(v) for v in vs] for k, vs in saved.get("samples", {}).items()}


def test_every_claim_has_a_saved_result_and_a_section(quick: Path) -> None:
    report = (quick / "report.md").read_text()
    page = (quick / "index.html").read_text()
    for claim in CLAIMS:
        saved = _saved(quick, claim)
        assert len(saved["statements"]) == len(claim.statements) >= 1
        assert all(s["verdict"] in VERDICTS for s in saved["statements"])
        assert f"## {claim.title}" in report and claim.quote[:40] in report
        assert f'id="{claim.key}"' in page
        for st in claim.statements:
            assert st.text in report
    assert "torch 2." in report and "seeds 0..0" in report and "load average" in report


def test_verdicts_follow_from_the_saved_figures(quick: Path) -> None:
    for claim in CLAIMS:
        saved = _saved(quick, claim)
        again = claim.judge(saved["figures"], saved["flags"], _samples(saved))
        assert [j.label for j in again] == [s["label"] for s in saved["statements"]], claim.key
        assert [j.met for j in again] == [s["met"] for s in saved["statements"]], claim.key


def test_report_prints_the_figures_the_verdicts_came_from(quick: Path) -> None:
    """Parse the printed figures back from report.md and re-judge: the same verdicts."""
    report = (quick / "report.md").read_text()
    sections = report.split("\n## ")[1:]
    assert len(sections) == len(CLAIMS)
    for claim, text in zip(CLAIMS, sections, strict=True):
        printed = {}
        per_seed = {}
        effects = {st.effect.samples for st in claim.statements if st.effect is not None}
        for name, value in re.findall(r"^\| (.+?) \| ([^|]+) \|$", text, flags=re.M):
            try:
                if name in effects:
                    per_seed[name] = [float(v) for v in value.split(", ")]
                else:
                    printed[name] = float(value)
            except ValueError:
                continue
        saved = _saved(quick, claim)
        for st, j in zip(claim.statements, saved["statements"], strict=True):
            assert f"{st.text} — **{j['label']}**" in text
            # printed values are rounded to 4 digits: re-judge where no figure sits within
            # rounding of its threshold (true of every criterion here by a wide margin)
            again = judge(st, printed, saved["flags"], per_seed)
            assert again.label == j["label"], (claim.key, st.key)


def _swapped(figures: dict[str, float], statement: Statement) -> dict[str, float]:
    """The figures with the two arms of every comparative required criterion exchanged."""
    out = dict(figures)
    for c in statement.criteria:
        if c.required and c.comparative:
            assert isinstance(c.right, str)
            out[c.left], out[c.right] = figures[c.right], figures[c.left]
    return out


def test_swapping_the_arms_of_a_comparison_flips_its_verdict(quick: Path) -> None:
    """Label the two arms the other way round: a statement that held must not hold."""
    checked = 0
    for claim in CLAIMS:
        saved = _saved(quick, claim)
        for st, j in zip(claim.statements, saved["statements"], strict=True):
            comparative = [c for c in st.criteria if c.required and c.comparative]
            if j["verdict"] != HOLDS or not (comparative or st.effect):
                continue
            samples = _samples(saved)
            if st.effect is not None:  # the effect of the swapped arms is the negated one
                samples[st.effect.samples] = [-v for v in samples[st.effect.samples]]
            swapped = judge(st, _swapped(saved["figures"], st), saved["flags"], samples)
            assert swapped.verdict != HOLDS, (claim.key, st.key)
            checked += 1
    assert checked >= 5  # the comparative statements that hold in the quick run


def test_plots_are_images(quick: Path) -> None:
    pngs = list((quick / "plots").glob("*.png"))
    assert len(pngs) >= 8
    for png in pngs:
        assert matplotlib.image.imread(png).ndim == 3


def test_a_rerun_reuses_finished_claims_and_redoes_a_missing_or_corrupt_one(quick: Path) -> None:
    seen: list[str] = []
    (quick / "claims" / "zero-grad.json").unlink()
    (quick / "claims" / "seed-code.json").write_text('{"key": "seed-code", "figu')  # cut short
    reproduce(
        quick, quick=True, only=["zero-grad", "seed-code", "key-properties"], progress=seen.append
    )
    assert "zero-grad: measuring" in seen
    assert any(s.startswith("warning:") and "seed-code" in s for s in seen)
    assert "seed-code: measuring" in seen and "key-properties: reused" in seen
    assert _saved(quick, BY_KEY["seed-code"])["statements"]


def test_a_saved_result_is_measured_again_when_its_code_or_settings_change(
    quick: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    reproduce(quick, quick=True, only=["adam-composition"], seeds=2, progress=seen.append)
    assert "adam-composition: measuring" in seen  # other settings: another fingerprint
    import descentlab.reproduce as rep

    real = rep.fingerprint
    monkeypatch.setattr(rep, "fingerprint", lambda claim, config: real(claim, config) + "x")
    seen.clear()
    reproduce(quick, quick=True, only=["key-properties"], progress=seen.append)
    assert seen[0] == "key-properties: code or configuration changed since it was measured"


def test_saved_results_whose_verdicts_do_not_follow_from_their_figures_are_redone(
    quick: Path,
) -> None:
    path = quick / "claims" / "rmsprop-scales.json"
    saved = json.loads(path.read_text())
    # edited by hand: the per-run effect the verdict reads, so the verdict no longer follows
    (effect,) = saved["samples"]
    saved["samples"][effect] = [-5.0]
    path.write_text(json.dumps(saved))
    seen: list[str] = []
    reproduce(quick, quick=True, only=["rmsprop-scales"], progress=seen.append)
    assert seen[0].startswith("warning:") and "do not follow" in seen[0]


def test_results_are_written_durably(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real(fd))
    write_json(tmp_path / "x.json", {"a": 1})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1}
    assert len(synced) == 2  # the file, then the folder that names it
    assert not list(tmp_path.glob("*.tmp"))
    old = os.umask(0o027)  # the file gets the mode open() would give it, not mkstemp's 0600
    try:
        write_json(tmp_path / "y.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "y.json").stat().st_mode & 0o777 == 0o640


def test_claim_keys_are_unique_and_cover_the_seed() -> None:
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
    for claim in CLAIMS:
        assert len({s.key for s in claim.statements}) == len(claim.statements)


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
    assert "rmsprop-scales: holds" in (tmp_path / "rel" / "report.md").read_text()


def test_the_timing_statement_keeps_its_verdict_under_cpu_load() -> None:
    """Twice as many busy processes as cores: CPU time per step, measured round-robin
    between the regimes, gives the same verdict as on the idle machine."""
    from descentlab.reproduce import regimes

    statement = next(s for s in regimes.CLAIM.statements if s.key == "minibatch-per-second")
    idle = regimes.timing_figures(True)
    busy = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(2 * (os.cpu_count() or 1))
    ]
    try:
        loaded = regimes.timing_figures(True)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    verdicts = [
        judge(statement, t, samples={regimes.PER_SECOND: regimes.per_second(t)}).verdict
        for t in (idle, loaded)
    ]
    assert verdicts == [HOLDS, HOLDS]


def test_claims_measured_in_processes_give_the_figures_of_one_process(tmp_path: Path) -> None:
    only = ["rmsprop-scales", "adam-composition", "stale-momentum"]
    seen: list[str] = []
    apart = reproduce(tmp_path / "apart", quick=True, only=only, jobs=2, progress=seen.append)
    assert "measuring 3 claims in 2 processes, the longest first" in seen
    seen.clear()
    alone = reproduce(tmp_path / "alone", quick=True, only=only, progress=seen.append)  # jobs=1
    assert not any("processes" in s for s in seen)
    assert list(apart) == list(alone) == only  # in the claims' order, whatever finished first
    for key in only:
        assert apart[key]["figures"] == alone[key]["figures"], key
        assert apart[key]["verdict"] == alone[key]["verdict"]
        assert (tmp_path / "apart" / "claims" / f"{key}.json").exists()


@pytest.mark.parametrize("jobs", ["0", "-2", "two"])
def test_bad_jobs_are_refused_with_a_one_line_error(tmp_path: Path, jobs: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "descentlab", "reproduce", "--quick", "--jobs", jobs,
         "--only", "key-properties", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr and "error" in last and "jobs" in last


def test_a_claim_failing_in_its_process_keeps_the_results_of_the_others(tmp_path: Path) -> None:
    (tmp_path / ".descentlab").write_text('{"kind": "reproduce"}')  # a report's folder
    (tmp_path / "plots").write_text("a file where the plots folder goes: plotting fails")
    with pytest.raises(OSError):
        reproduce(tmp_path, quick=True, only=["rmsprop-scales", "zero-grad"], jobs=2)
    saved = json.loads((tmp_path / "claims" / "zero-grad.json").read_text())  # no plot: done
    assert saved["key"] == "zero-grad" and saved["statements"]
    assert not (tmp_path / "claims" / "rmsprop-scales.json").exists()


def test_the_command_measures_claims_in_one_process_per_cpu(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "descentlab", "reproduce", "--quick", "--out", str(tmp_path),
         "--only", "key-properties,adam-composition"],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = min(os.cpu_count() or 1, 2)
    assert (f"in {jobs} processes" in proc.stderr) == (jobs > 1)
