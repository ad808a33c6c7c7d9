"""Modules stay small enough to read in one sitting: at most 300 lines outside tests.

"Outside tests" is every Python file CI type-checks (the root pyproject's mypy ``files``, less
its ``exclude``) that is not a test: the packages' sources, the bench, the deploy scripts, the
migration environments and the snippets. Generated migration versions are excluded by mypy too.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAX_LINES = 300


def _checked_sources() -> list[Path]:
    mypy = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]
    excluded = [re.compile(pattern) for pattern in mypy.get("exclude", [])]
    found: set[Path] = set()
    for entry in mypy["files"]:
        root = REPO / entry
        for path in [root] if root.is_file() else root.rglob("*.py"):
            relative = path.relative_to(REPO)
            if "tests" in relative.parts or path.name == "conftest.py":
                continue  # tests are exempt
            if path.name.startswith("test_") or relative.parts[0].startswith("."):
                continue
            if any(pattern.search(relative.as_posix()) for pattern in excluded):
                continue
            found.add(path)
    return sorted(found)


SOURCES = _checked_sources()


def test_the_sources_are_found() -> None:
    names = {path.relative_to(REPO).as_posix() for path in SOURCES}
    assert len(SOURCES) > 100
    # The widening beyond the packages' src folders stays in force.
    assert {"bench/run.py", "deploy/docker/healthcheck.py"} <= names
    assert not any("/migrations/versions/" in name for name in names)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_a_module_is_at_most_300_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(REPO)}: {lines} lines; split it by side"
