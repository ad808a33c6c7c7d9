"""Every service's migrations are made the same way: one Alembic file template, one config."""

from __future__ import annotations

from pathlib import Path

from agora_deploy.services import REGISTRY


def _without_comments(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("#")]


def test_one_alembic_template_and_config_for_every_service() -> None:
    first = REGISTRY[0].path
    template = (first / "migrations" / "script.py.mako").read_text()
    config = _without_comments((first / "alembic.ini").read_text())
    for spec in REGISTRY[1:]:
        path: Path = spec.path
        assert (path / "migrations" / "script.py.mako").read_text() == template, spec.name
        assert _without_comments((path / "alembic.ini").read_text()) == config, spec.name
