"""Modules stay small enough to read in one sitting: at most 300 lines outside tests."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAX_LINES = 300
SOURCES = sorted(
    path
    for root in ("shared", "services", "deploy")
    for path in (REPO / root).glob("**/src/**/*.py")
    if "migrations" not in path.parts
)


def test_the_sources_are_found() -> None:
    assert len(SOURCES) > 100


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_a_module_is_at_most_300_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(REPO)}: {lines} lines; split it by side"
