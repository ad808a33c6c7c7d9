"""Alembic environment of the items service: async, DATABASE_URL read through ItemsSettings."""

from __future__ import annotations

import asyncio

from agora_items.config import ItemsSettings
from agora_items.models import metadata
from agora_kit.db import async_url
from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

config = context.config


def _url() -> str:
    """The database to migrate: Alembic's ``-x url=...`` / config option, else the settings."""
    configured = config.get_main_option("sqlalchemy.url")
    url = configured or ItemsSettings().database_url
    return async_url(url).render_as_string(hide_password=False)


def run_migrations_offline() -> None:
    """Emit SQL to stdout instead of connecting (``alembic upgrade head --sql``)."""
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    """Connect with asyncpg and migrate in one transaction (Postgres DDL is transactional)."""
    engine = create_async_engine(
        _url(), poolclass=NullPool, connect_args={"timeout": 10, "command_timeout": 120}
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
