"""The shared Alembic env.py body against real Postgres: online, offline, check, URL order."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from agora_kit.db import create_engine
from agora_kit.settings import ServiceSettings
from alembic import command
from alembic.config import Config

ENV_PY = """
import os

import sqlalchemy as sa
from agora_kit.db import make_metadata
from agora_kit.migrations import run_migrations
from agora_kit.settings import ServiceSettings

metadata = make_metadata()
sa.Table(
    "gadget",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    # GADGET_DRIFT makes the models disagree with the chain (only a type: compare_type).
    sa.Column("name", sa.String(40) if os.environ.get("GADGET_DRIFT") else sa.Text, nullable=False),
)

run_migrations(target_metadata=metadata, settings_factory=ServiceSettings)
"""

VERSION_PY = """
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gadget",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gadget")),
    )


def downgrade() -> None:
    op.drop_table("gadget")
"""

ALEMBIC_INI = """[alembic]
script_location = %(here)s/migrations
path_separator = os
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A one-table Alembic project whose env.py is the kit's two lines."""
    (tmp_path / "migrations" / "versions").mkdir(parents=True)
    (tmp_path / "alembic.ini").write_text(ALEMBIC_INI)
    (tmp_path / "migrations" / "env.py").write_text(ENV_PY)
    (tmp_path / "migrations" / "script.py.mako").write_text("")
    (tmp_path / "migrations" / "versions" / "0001_gadget.py").write_text(VERSION_PY)
    return tmp_path


def _closed_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql://postgres@127.0.0.1:{port}/nowhere"


def _alembic(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=project,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _tables_and_head(url: str) -> tuple[set[str], str | None]:
    engine = create_engine(ServiceSettings(database_url=url))
    try:
        async with engine.connect() as conn:
            tables = set(await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names()))
            head = None
            if "alembic_version" in tables:
                head = await conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
            return tables, head
    finally:
        await engine.dispose()


def _plain(url: str) -> str:
    # As compose sets it: no driver, the kit switches to asyncpg.
    return url.replace("postgresql+asyncpg://", "postgresql://")


@pytest.mark.asyncio(loop_scope="session")
async def test_upgrade_check_and_downgrade_from_database_url(
    project: Path, create_database: Callable[[str], str]
) -> None:
    url = create_database("kit_migrations")

    upgraded = await asyncio.to_thread(
        _alembic, project, "upgrade", "head", DATABASE_URL=_plain(url)
    )
    assert upgraded.returncode == 0, upgraded.stderr
    assert await _tables_and_head(url) == ({"gadget", "alembic_version"}, "0001")

    # target_metadata reaches autogenerate: in step, then a type drift is caught.
    checked = await asyncio.to_thread(_alembic, project, "check", DATABASE_URL=_plain(url))
    assert checked.returncode == 0, checked.stderr
    drifted = await asyncio.to_thread(
        _alembic, project, "check", DATABASE_URL=_plain(url), GADGET_DRIFT="1"
    )
    assert drifted.returncode != 0
    assert "modify_type" in drifted.stderr + drifted.stdout

    downgraded = await asyncio.to_thread(
        _alembic, project, "downgrade", "base", DATABASE_URL=_plain(url)
    )
    assert downgraded.returncode == 0, downgraded.stderr
    assert await _tables_and_head(url) == ({"alembic_version"}, None)


def test_offline_emits_sql_without_a_database(project: Path) -> None:
    result = _alembic(project, "upgrade", "head", "--sql", DATABASE_URL=_closed_url())
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE gadget" in result.stdout
    assert "INSERT INTO alembic_version (version_num) VALUES ('0001')" in result.stdout


def _config(project: Path) -> Config:
    return Config(str(project / "alembic.ini"))


@pytest.mark.asyncio(loop_scope="session")
async def test_url_given_to_alembic_wins_over_database_url(
    project: Path, create_database: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", _closed_url())
    by_option, by_attribute = create_database("kit_mig_opt"), create_database("kit_mig_attr")

    config = _config(project)
    config.set_main_option("sqlalchemy.url", by_option)
    # The env runs its own event loop: off this one, in a thread.
    await asyncio.to_thread(command.upgrade, config, "head")
    assert await _tables_and_head(by_option) == ({"gadget", "alembic_version"}, "0001")

    config = _config(project)
    config.set_main_option("sqlalchemy.url", _closed_url())
    config.attributes["database_url"] = by_attribute
    await asyncio.to_thread(command.upgrade, config, "head")
    assert await _tables_and_head(by_attribute) == ({"gadget", "alembic_version"}, "0001")
