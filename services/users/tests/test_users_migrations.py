"""The Alembic chain: it builds exactly the tables the models describe, and it reverts."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from agora_kit.testing.db import migrate
from agora_users.models import Base
from agora_users.testing import PROJECT_DIR
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _diff(connection: sa.Connection) -> list[Any]:
    return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


def _tables(connection: sa.Connection) -> set[str]:
    return set(sa.inspect(connection).get_table_names())


async def test_migrations_match_the_models_and_downgrade(
    create_database: Callable[[str], str],
) -> None:
    url = create_database("users_migrations")
    await migrate(url, PROJECT_DIR)
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
            assert {"user_account", "refresh_token", "one_time_token", "outbox"} <= (
                await conn.run_sync(_tables)
            )
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "alembic", "downgrade", "base"],
            cwd=PROJECT_DIR,
            env={**os.environ, "DATABASE_URL": url},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) == {"alembic_version"}
    finally:
        await engine.dispose()
