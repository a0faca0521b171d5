"""The explainer in a real browser: headless Chromium opens ``index.html`` from disk
(:mod:`browser`).

Every section is found; each of its controls is moved from the keyboard (arrow keys on a
slider, space on a toggle), and the plotted data must then be the run of the new grid point,
read from the figure itself, and differ from what was drawn before. No console error; nothing
wider than 1280 px. ``DESCENTLAB_SCREENSHOT=<path>`` also saves the picture the README shows.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from browser import NEEDS_CHROMIUM, WIDTH, opened
from descentlab.explain import explain

pytestmark = NEEDS_CHROMIUM

# The plotted traces of a figure (the static contours left out), and the run the page's data
# hold for the grid point the controls show.
PLOTTED = """id => {
  const gd = document.getElementById(id);
  return gd.data.filter(t => t.type !== 'contour').map(t => [t.name, Array.from(t.y)]);
}"""
EXPECTED = """([section, id]) => {
  const key = document.getElementById(id).dataset.key;
  return [key, DATA[section].runs[key][id].map(t => [t.name, t.y])];
}"""


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("plotly")
    return explain(tmp_path_factory.mktemp("explain") / "page")


def _move(pw_page: Any, control: str, kind: str, at_end: bool) -> None:
    el = pw_page.locator(f"#{control}")
    el.focus()
    if kind == "checkbox":
        pw_page.keyboard.press("Space")
    else:
        pw_page.keyboard.press("ArrowLeft" if at_end else "ArrowRight")


def test_every_slider_redraws_its_figures_with_the_run_of_its_new_value(page: Path) -> None:
    moved = 0
    with opened(page) as (tab, errors):
        shot = os.environ.get("DESCENTLAB_SCREENSHOT")
        if shot:  # as a reader first sees it
            tab.locator("#momentum").screenshot(path=shot)
        sections = tab.eval_on_selector_all("section", "els => els.map(e => e.id)")
        assert len(sections) == 8
        for section in sections:
            controls = tab.eval_on_selector_all(
                f"#{section} [data-control]",
                "els => els.map(e => [e.id, e.type, e.value, e.max])",
            )
            figures = tab.eval_on_selector_all(f"#{section} .plot", "els => els.map(e => e.id)")
            assert controls and figures, section
            for cid, kind, value, top in controls:
                before = {f: tab.evaluate(PLOTTED, f) for f in figures}
                shown = tab.inner_text(f"#{cid}-value")
                _move(tab, cid, kind, kind == "range" and value == top)
                assert tab.inner_text(f"#{cid}-value") != shown, cid  # the value printed
                changed = False
                for f in figures:
                    key, expected = tab.evaluate(EXPECTED, [section, f])
                    plotted = tab.evaluate(PLOTTED, f)
                    assert plotted == expected, (cid, f, key)  # the new grid point's run
                    changed = changed or plotted != before[f]
                assert changed, f"moving {cid} changed no figure of {section}"
                moved += 1
        widths = tab.eval_on_selector_all(
            ".plot, .controls, p",
            "els => els.map(e => Math.ceil(e.getBoundingClientRect().right))",
        )
        page_width = tab.evaluate("document.documentElement.scrollWidth")
    assert moved >= 14  # every control of every section
    assert errors == []
    assert page_width <= WIDTH and max(widths) <= WIDTH
