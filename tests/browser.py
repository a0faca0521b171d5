"""Headless Chromium for the tests that open a generated page from disk.

Debian's Chromium (``.ci/run`` installs it), driven by Playwright through its executable
path; without one, the tests that use :data:`NEEDS_CHROMIUM` are skipped, saying why.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
NEEDS_CHROMIUM = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine")
WIDTH = 1280


@contextlib.contextmanager
def opened(page: Path) -> Iterator[tuple[Any, list[str]]]:
    """``page`` loaded in a tab 1280 px wide, and the console errors and page errors seen
    while it is open (a list that fills as the test goes on)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            tab = browser.new_page(viewport={"width": WIDTH, "height": 900})
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda e: errors.append(str(e)))
            tab.goto(page.as_uri())
            tab.wait_for_load_state("load")
            yield tab, errors
        finally:
            browser.close()
