"""Lint, format and type checks run as part of the test command, so CI runs them too."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        [sys.executable, "-m", "mypy"],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_tool_is_clean(command: list[str]) -> None:
    if command[0] == "ruff":
        command = [shutil.which("ruff") or "ruff", *command[1:]]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr


# ----------------------------------------------------------------- the module graph

PACKAGE = ROOT / "src" / "descentlab"


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (the ``check`` start-up hook is a script)."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        if "_site" in path.parts:
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path) -> list[tuple[str, str]]:
    """``(module, imported name)`` of every ``from descentlab... import`` in ``path``, at any
    depth (a function-level import still ties two modules together)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package[: len(package) - node.level + 1]
            target = ".".join([*base, *([node.module] if node.module else [])])
        else:
            target = node.module or ""
        if target.split(".")[0] == "descentlab":
            found += [(target, alias.name) for alias in node.names]
    return found


def test_no_module_imports_another_modules_private_names() -> None:
    private = [
        f"{name}: from {target} import {imported}"
        for name, path in _modules().items()
        for target, imported in _imports(name, path)
        if imported.startswith("_") and not imported.startswith("__")
    ]
    assert not private, "\n".join(private)


def test_modules_import_each_other_without_a_circle() -> None:
    modules = _modules()
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, imported in _imports(name, path):
            sub = f"{target}.{imported}"
            edges[name].add(sub if sub in modules else target)
    edges = {k: {v for v in vs if v in modules and v != k} for k, vs in edges.items()}
    # Depth-first search for a back edge, reporting the circle it closes.
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (circle := visit(nxt)):
                return circle
        state[node] = 2
        path.pop()
        return None

    for name in sorted(modules):
        if name not in state:
            circle = visit(name)
            assert circle is None, " -> ".join(circle)
