"""The documents of ``descentlab reproduce`` (``reproduce/document.py`` and its template):
they show the saved verdicts and figures, escaped, and decide nothing."""

from __future__ import annotations

from pathlib import Path

from descentlab.reproduce.base import (
    FAILS,
    INCONCLUSIVE,
    Claim,
    Context,
    Measurement,
    Statement,
    require,
    support,
)
from descentlab.reproduce.document import html_page, number, section_markdown


def _measure(ctx: Context) -> Measurement:
    raise AssertionError("a document never measures")


CLAIM = Claim(
    key="k",
    title="A <b>bold</b> claim",
    quote='"A" & B',
    experiment="run <script>x</script>",
    statements=(
        Statement("one", "A < B", (require("A below B", "A", "<", "B"),)),
        Statement(
            "two", "C is high", (require("C high", "C", ">", 1), support("D low", "D", "<", 0))
        ),
    ),
    measure=_measure,
)
RESULT = {
    "figures": {"A": 3.0, "B": 2.0, "C": 5.0, "D": 1.0},
    "flags": {"C": "its best lr is at the edge"},
    "statements": [
        {"verdict": FAILS, "label": FAILS, "detail": "", "met": [False]},
        {
            "verdict": INCONCLUSIVE,
            "label": INCONCLUSIVE,
            "detail": "its best lr is at the edge",
            "met": [True, False],
        },
    ],
    "verdict": "2 statements: 1 do not hold, 1 inconclusive",
    "plots": [],
    "table": [["x", "y<z"], [["1", "2"]]],
    "remarks": ["a & b"],
}


def test_the_page_escapes_every_text_and_shows_the_saved_verdicts(tmp_path: Path) -> None:
    page = html_page([CLAIM], {"k": RESULT}, "Mode: --quick", tmp_path)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>bold</b>" not in page and "&#34;A&#34; &amp; B" in page
    assert '<section id="k">' in page and '<a href="#k">' in page
    assert "<span class='verdict fails'>does not hold</span>" in page
    assert "<span class='verdict partly'>inconclusive</span> (its best lr is at the edge)" in page
    assert "&#9744; D low <i>(supporting)</i>" in page and "&#9745; C high</li>" in page
    assert "<th>y&lt;z</th>" in page and "<p>a &amp; b</p>" in page
    assert "<p><i>C</i> cannot carry a verdict: its best lr is at the edge.</p>" in page
    assert "Verdict: 2 statements: 1 do not hold, 1 inconclusive" in page


def test_the_markdown_section_prints_the_figures_and_the_saved_labels() -> None:
    md = section_markdown(CLAIM, RESULT)
    assert "A < B — **does not hold**" in md
    assert "  (inconclusive: its best lr is at the edge)" in md
    assert "- [ ] D low *(supporting)*" in md and "- [x] C high" in md
    assert "| A | 3 |" in md and md.rstrip().endswith(f"**Verdict: {RESULT['verdict']}.**")


def test_numbers_print_with_four_significant_digits() -> None:
    assert [number(x) for x in (0.000123456, 12345.678, 7, float("nan"))] == [
        "0.0001235",
        "1.235e+04",
        "7",
        "nan",
    ]
