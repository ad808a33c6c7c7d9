"""docs/architecture.md's "follow one item to its email" table names code that exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "architecture.md"
#: `path/to/file.py:Name` or `path/to/file.py:Class.method` in a table cell.
_STEP = re.compile(r"`([\w./-]+\.py):([\w.]+)`")
#: `path/to/file` (name) for a step that is a file rather than a function.
_FILE = re.compile(r"\| `([\w./-]+\.(?:py|yml))` \(")


def _section() -> str:
    text = DOC.read_text()
    start = text.index("## Follow one item to its email")
    return text[start : text.index("\n## ", start + 1)]


def _defined(path: Path) -> set[str]:
    """Every top-level function and class, and every ``Class.method``, of a module."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names |= {
                f"{node.name}.{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            }
    return names


STEPS = _STEP.findall(_section())


def test_the_table_has_its_steps() -> None:
    assert len(STEPS) >= 15
    assert len(_FILE.findall(_section())) >= 2


@pytest.mark.parametrize(("path", "name"), STEPS)
def test_each_step_names_a_function_that_exists(path: str, name: str) -> None:
    assert name in _defined(REPO / path), f"{path} has no {name}"


@pytest.mark.parametrize("path", _FILE.findall(_section()))
def test_each_file_step_exists(path: str) -> None:
    assert (REPO / path).is_file()
