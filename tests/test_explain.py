"""``descentlab explain``: the page's data are runs of the library's rules; the page stands
alone; bad input is refused with one line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from descentlab import numpy as dnp
from descentlab.explain import explain, figures
from descentlab.lab import LabError
from descentlab.reproduce import reproduce

pytest.importorskip("plotly")


@pytest.fixture(scope="module")
def claims(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("claims")
    reproduce(out, quick=True, only=["stale-momentum", "rmsprop-scales"])
    return out


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory, claims: Path) -> Path:
    return explain(tmp_path_factory.mktemp("explain") / "page", claims=claims)


def data(page: Path) -> dict[str, Any]:
    text = page.read_text(encoding="utf-8")
    found = re.search(
        r'<script type="application/json" id="explain-data">(.*?)</script>', text, re.S
    )
    assert found is not None
    return json.loads(found.group(1).replace("<\\/", "</"))


def test_the_page_stands_alone_under_10_mb(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing fetched
    assert (page.parent / "plotly.min.js").stat().st_size > 1e6  # the library, beside it
    total = sum(p.stat().st_size for p in page.parent.iterdir())
    assert total < 10e6, total
    sections = re.findall(r'<section id="([\w-]+)"', text)
    assert sections == [
        "regimes",
        "momentum",
        "rmsprop",
        "adam",
        "adamw",
        "zero-grad",
        "stale-momentum",
        "finetune",
    ]


def test_every_control_point_has_a_run_and_every_figure_its_labels(page: Path) -> None:
    for name, section in data(page).items():
        sizes = [len(c["values"]) for c in section["controls"]]
        assert len(section["runs"]) == int(np.prod(sizes)), name
        for f in section["figures"]:
            assert f["title"] and f["x"] and f["y"] and f["caption"], (name, f["id"])
            for run in section["runs"].values():
                assert run[f["id"]] and all(t["name"] for t in run[f["id"]])


def _path(opt: dnp.Transformation, h: np.ndarray, w0: np.ndarray, steps: int) -> np.ndarray:
    w, state = w0.copy(), opt.init(w0)
    out = [w.copy()]
    for _ in range(steps):
        w, state = opt.update(w, h * w, state)
        out.append(w.copy())
    return np.array(out)


def test_the_momentum_runs_are_the_rules_runs(page: Path) -> None:
    """Recomputed here with the NumPy drop-ins: the page's heavy-ball and EMA paths at a grid
    point, and the seed's identity (the EMA form at lr is heavy-ball at lr x (1 - beta))."""
    section = data(page)["momentum"]
    lrs, betas = section["controls"][0]["values"], section["controls"][1]["values"]
    i, j = lrs.index(0.04), betas.index(0.9)
    traces = {t["name"]: t for t in section["runs"][f"{i}_{j}"]["momentum-path"]}
    h, w0 = np.array([1.0, 20.0]), np.array([-8.0, 1.0])
    heavy = _path(dnp.sgd(lr=0.04, momentum=0.9), h, w0, 80)
    ema = _path(dnp.momentum(lr=0.04, momentum=0.9), h, w0, 80)
    assert np.allclose(traces["heavy-ball (torch)"]["x"], heavy[:, 0], rtol=1e-3, atol=1e-6)
    assert np.allclose(traces["EMA form (the seed)"]["y"], ema[:, 1], rtol=1e-3, atol=1e-6)
    same = _path(dnp.sgd(lr=0.04 * (1 - 0.9), momentum=0.9), h, w0, 80)
    assert np.allclose(ema, same, rtol=1e-9, atol=1e-12)


def test_the_adamw_path_ignores_the_gradient_scale_and_adam_l2_does_not(page: Path) -> None:
    section = data(page)["adamw"]
    wd = section["controls"][1]["values"].index(0.3)
    ends: dict[str, list[np.ndarray]] = {"AdamW": [], "Adam + L2": []}
    for i, _ in enumerate(section["controls"][0]["values"]):
        for t in section["runs"][f"{i}_{wd}"]["adamw-path"]:
            rule = t["name"].split(" (")[0]
            if rule in ends:
                ends[rule].append(np.array([t["x"][-1], t["y"][-1]]))
    spread = {k: float(np.ptp(np.array(v), axis=0).max()) for k, v in ends.items()}
    assert spread["AdamW"] < 0.05 < 0.5 < spread["Adam + L2"], spread


def test_measured_verdicts_are_shown_with_a_link_and_otherwise_how_to_get_them(
    page: Path, claims: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = page.read_text(encoding="utf-8")
    stale = text.split('<section id="stale-momentum"')[1].split("</section>")[0]
    assert "What descentlab reproduce measured" in stale
    assert "exact, by construction" in stale and "index.html#stale-momentum" in stale
    momentum = text.split('<section id="momentum"')[1].split("</section>")[0]
    assert "descentlab reproduce --out" in momentum  # not measured in that folder
    monkeypatch.chdir(tmp_path)  # no default reproduce folder here
    bare = explain(tmp_path / "bare").read_text(encoding="utf-8")
    assert "What descentlab reproduce measured" not in bare
    assert bare.count("descentlab reproduce --out descentlab-reproduce") == 8


def test_bad_input_is_refused_with_one_line_and_exit_2(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="holds no descentlab reproduce results"):
        explain(tmp_path / "x", claims=tmp_path / "missing")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for argv in (["--claims", str(tmp_path / "missing")], ["--out", str(mine)]):
        proc = subprocess.run(
            [sys.executable, "-m", "descentlab", "explain", "--out", str(tmp_path / "y"), *argv],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert (mine / "notes.txt").read_text() == "keep me" and len(list(mine.iterdir())) == 1


def test_a_section_is_the_same_every_time_it_is_built() -> None:
    """The sections are plain functions of the rules and seeded data: a page built twice
    shows the same runs."""
    a, b = figures.stale_momentum(), figures.stale_momentum()
    assert a["runs"] == b["runs"]
