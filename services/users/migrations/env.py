"""Alembic environment of the users database (async, URL from DATABASE_URL via the settings)."""

from __future__ import annotations

import asyncio

from agora_kit.db import async_url
from agora_kit.settings import ServiceSettings
from agora_users.models import Base
from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

target_metadata = Base.metadata


def _url() -> str:
    # The settings base reads DATABASE_URL exactly as the service does; the keys settings of
    # UsersSettings are not needed to migrate, so a migration job does not have to carry them.
    url = context.config.attributes.get("database_url") or ServiceSettings().database_url
    return async_url(str(url)).render_as_string(hide_password=False)


def run_migrations_offline() -> None:
    """Emit the SQL without connecting (``alembic upgrade head --sql``)."""
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    """Connect with asyncpg and run the migrations in one transaction."""
    engine = create_async_engine(
        _url(), poolclass=pool.NullPool, connect_args={"timeout": 10, "command_timeout": 120}
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
