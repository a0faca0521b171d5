"""The generated report in a real browser: headless Chromium opens ``index.html``.

Chromium is Debian's package (``.ci/run`` installs it); Playwright drives it through its
executable path. Without a Chromium on the machine the test is skipped, saying why.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from browser import NEEDS_CHROMIUM, WIDTH, opened
from descentlab.lab import compare

pytestmark = NEEDS_CHROMIUM


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("browser")
    compare(
        workloads=["ravine", "digits-logreg"],
        optimizers=["sgd", "sgd:momentum=0.9", "adam", "adam:betas=0.9/0.99"],
        lrs=[0.01, 0.1],
        seeds=2,
        steps=30,
        out=out,
    )
    return out / "index.html"


def test_the_report_loads_every_image_without_console_errors_and_fits_1280px(report: Path) -> None:
    with opened(report) as (page, errors):
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => [e.complete, e.naturalWidth, e.alt])"
        )
        # right edge on the page, and content width vs shown width (a table that only
        # fits because it scrolls inside itself does not fit)
        tables = page.eval_on_selector_all(
            "table",
            "els => els.map(e => [Math.ceil(e.getBoundingClientRect().right), "
            "e.scrollWidth, e.clientWidth])",
        )
        page_width = page.evaluate("document.documentElement.scrollWidth")
        headline = page.inner_text("body")
    assert errors == []
    assert len(images) >= 4  # loss curves and trajectories for two workloads
    broken = [alt for complete, width, alt in images if not complete or width == 0]
    assert broken == []
    assert tables and max(right for right, _, _ in tables) <= WIDTH
    assert all(content <= shown + 1 for _, content, shown in tables)
    assert page_width <= WIDTH  # no horizontal scrolling
    assert "Conclusions" in headline
