"""The quickstart is a client of the library: every ``mgeldm`` module the recipes import is in its public API."""

from __future__ import annotations

import ast
from pathlib import Path

from recipes.quickstart import PUBLIC_API

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def _imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n == "mgeldm" or n.startswith("mgeldm.")}


def test_recipes_import_only_the_public_api():
    files = sorted(RECIPES.rglob("*.py"))
    assert files
    private = {
        f"{p.relative_to(RECIPES)}: {name}"
        for p in files
        for name in _imported(p)
        if not any(name == public or name.startswith(public + ".") for public in PUBLIC_API)
    }
    assert private == set()
    assert not (Path(__file__).resolve().parents[2] / "mgeldm" / "data" / "synth").exists()
