"""The body of every service's Alembic ``env.py``: async engine, offline and online runs.

Import this only from ``env.py``: ``alembic.context`` is usable only while Alembic runs one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from alembic import context
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from agora_kit.db import async_url
from agora_kit.settings import ServiceSettings

#: Connect timeout of a migration run, seconds.
CONNECT_TIMEOUT_S = 10
#: Per-statement timeout, seconds: generous, as DDL on a large table takes a while.
COMMAND_TIMEOUT_S = 120


def migration_url(settings_factory: Callable[[], ServiceSettings]) -> str:
    """Return the database to migrate, as an asyncpg URL.

    In order: ``config.attributes["database_url"]`` or the ``sqlalchemy.url`` option (tests
    and tools calling Alembic's API set them), else ``DATABASE_URL`` read through the settings.
    """
    config = context.config
    url = (
        config.attributes.get("database_url")
        or config.get_main_option("sqlalchemy.url")
        or settings_factory().database_url
    )
    return async_url(str(url)).render_as_string(hide_password=False)


def run_migrations(
    *, target_metadata: MetaData, settings_factory: Callable[[], ServiceSettings]
) -> None:
    """Run what Alembic was asked for: emit SQL (``--sql``), else migrate over asyncpg."""
    url = migration_url(settings_factory)
    if context.is_offline_mode():
        context.configure(
            url=url, target_metadata=target_metadata, literal_binds=True, compare_type=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_run_online(url, target_metadata))


async def _run_online(url: str, target_metadata: MetaData) -> None:
    # One transaction for the whole chain: Postgres DDL is transactional.
    engine = create_async_engine(
        url,
        poolclass=NullPool,
        connect_args={"timeout": CONNECT_TIMEOUT_S, "command_timeout": COMMAND_TIMEOUT_S},
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync, target_metadata)
    finally:
        await engine.dispose()


def _run_sync(connection: Connection, target_metadata: MetaData) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()
