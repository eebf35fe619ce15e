"""Imports point down: indexer -> imgsearch, never imgsearch -> indexer (issue 10 §0).

Only the CLI, the top of the data flow, drives the indexer (`imgsearch index`); every other
module under imgsearch/ is below it and must work without the indexer package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "imgsearch"
TOP = {PACKAGE / "cli.py"}  # cli -> pipeline/search -> encoder/library (STYLE.md)


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports inside functions count)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def below_cli() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p not in TOP)


@pytest.mark.parametrize("path", below_cli(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imgsearch_never_imports_indexer(path: Path) -> None:
    upward = sorted(m for m in imported_modules(path) if m == "indexer" or m.startswith("indexer."))
    assert not upward, f"{path.relative_to(PACKAGE.parent)} imports {', '.join(upward)}"


def test_the_check_sees_lazy_imports(tmp_path: Path) -> None:
    """The walk over the tree finds an import hidden in a function, as search.py's once was."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from indexer.decode import decode\n    import indexer.walk\n")
    assert imported_modules(sample) == {"indexer.decode", "indexer.walk"}


def test_the_decoder_lives_below_both() -> None:
    """The query path decodes a query image with the same code as `index` does."""
    assert "imgsearch.decode" in imported_modules(PACKAGE / "search.py")
    indexer = PACKAGE.parent / "indexer"
    assert "imgsearch.decode" in imported_modules(indexer / "pipeline.py")
