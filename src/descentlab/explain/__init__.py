"""``descentlab explain``: the seed as an interactive page a learner can play with.

:func:`explain` computes every section of :mod:`descentlab.explain.figures` (runs of
descentlab's own rules over each section's control grid) and writes ``index.html`` with the
runs embedded as data, beside ``plotly.min.js`` (Plotly's JavaScript, from the ``plotly``
package of the ``explain`` extra): the page opens from disk with no network. Moving a
control looks the run of the new grid point up and redraws the figures with
``Plotly.react``; nothing is computed in the browser.

Where ``descentlab reproduce`` has written its claims (``claims=`` a reproduce folder, by
default ``descentlab-reproduce`` when it holds one), each section shows the verdicts of
the claims it speaks of, with their effects and a link to the full report.

Example::

    descentlab explain --out descentlab-explain      # then open descentlab-explain/index.html
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from ..lab.errors import LabError
from ..lab.files import own_folder, write_atomic
from .figures import SECTIONS

__all__ = ["explain"]

DEFAULT_OUT = "descentlab-explain"
DEFAULT_CLAIMS = "descentlab-reproduce"
TITLE = "Gradient descent and its variants, explained by running them"


def _plotly_js() -> str:
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise LabError(
            'descentlab explain needs plotly (the "explain" extra): '
            'pip install "descentlab[explain]"'
        ) from None
    return str(get_plotlyjs())


def _claims(folder: Path | None) -> tuple[dict[str, dict[str, Any]], Path | None]:
    """The saved claims of a reproduce folder (``{}`` when there is none)."""
    if folder is None or not (folder / "claims").is_dir():
        return {}, None
    out = {}
    for path in sorted((folder / "claims").glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a corrupt or partial claim: the section says how to run it again
        if isinstance(data, dict) and "statements" in data:
            out[path.stem] = data
    return out, folder


def _verdicts(section: dict[str, Any], saved: dict[str, dict[str, Any]], report: str | None):
    from ..reproduce import BY_KEY
    from ..reproduce.document import effect_text

    shown = []
    for key in section["claims"]:
        claim, result = BY_KEY.get(key), saved.get(key)
        if claim is None or result is None:
            continue
        saved_by_key = {j.get("key"): j for j in result["statements"]}
        statements = [  # matched by key: a result saved by older code may differ in order
            {"text": st.text, "label": j.get("label", j["verdict"]), "effect": effect_text(j)}
            for st in claim.statements
            if (j := saved_by_key.get(st.key)) is not None
        ]
        shown.append(
            {
                "key": key,
                "title": claim.title,
                "statements": statements,
                "link": f"{report}#{key}" if report else None,
            }
        )
    return shown


def explain(
    out: str | os.PathLike[str] = DEFAULT_OUT,
    claims: str | os.PathLike[str] | None = None,
) -> Path:
    """Write the explainer to ``out`` (``index.html`` and ``plotly.min.js``); returns the
    page's path. ``claims``: a ``descentlab reproduce`` folder whose verdicts the sections
    show (default: ``descentlab-reproduce`` if it holds one; a folder given that holds none
    is an error). Raises :class:`~descentlab.lab.LabError` on bad input, with nothing
    written."""
    import jinja2

    if claims is not None and not (Path(claims) / "claims").is_dir():
        raise LabError(
            f"--claims {str(claims)!r} holds no descentlab reproduce results (no claims/ "
            "folder); run: descentlab reproduce --out " + str(claims)
        )
    js = _plotly_js()
    try:
        folder = own_folder(out, "explain")
    except ValueError as exc:
        raise LabError(str(exc)) from None
    saved, source = _claims(Path(claims) if claims is not None else Path(DEFAULT_CLAIMS))
    report = None
    if source is not None and (source / "index.html").exists():
        report = Path(os.path.relpath(source / "index.html", folder.resolve())).as_posix()
    sections = [make() for make in SECTIONS]
    for s in sections:
        s["verdicts"] = _verdicts(s, saved, report)
    data = json.dumps(
        {s["key"]: {k: s[k] for k in ("controls", "figures", "runs", "static")} for s in sections},
        separators=(",", ":"),
        allow_nan=False,
    ).replace("</", "<\\/")  # nothing in the data can close the script element
    text = (resources.files("descentlab.explain") / "templates" / "explain.html").read_text("utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    page = env.from_string(text).render(
        title=TITLE,
        sections=sections,
        data=data,
        have_claims=bool(saved),
        claims_folder=str(source) if source is not None else DEFAULT_CLAIMS,
    )
    write_atomic(folder / "plotly.min.js", js)
    write_atomic(folder / "index.html", page)
    return folder / "index.html"
