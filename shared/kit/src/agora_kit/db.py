"""Database plumbing: one engine per process, an explicit naming convention, session factories."""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from agora_kit.settings import ServiceSettings

#: Explicit constraint names, so Alembic migrations are stable and reviewable.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def make_metadata() -> MetaData:
    """Return a new MetaData with Agora's naming convention (one per service)."""
    return MetaData(naming_convention=NAMING_CONVENTION)


def async_url(url: str) -> URL:
    """Return ``url`` with the asyncpg driver (compose sets plain ``postgresql://``)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed


def plain_url(url: str) -> str:
    """Return ``url`` as a libpq-style ``postgresql://`` string (for asyncpg.connect)."""
    return async_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def create_engine(settings: ServiceSettings, *, application_name: str | None = None) -> AsyncEngine:
    """Create the process engine: pre-ping, recycle, bounded pool, connect/statement timeouts."""
    return create_async_engine(
        async_url(settings.database_url),
        # A failed statement's exception text would otherwise carry its bound parameters
        # (password and token hashes, addresses) into the logs the kit writes.
        hide_parameters=True,
        pool_pre_ping=True,
        pool_recycle=settings.db_pool_recycle_s,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_connect_timeout_s,
        connect_args={
            "timeout": settings.db_connect_timeout_s,
            "command_timeout": settings.db_statement_timeout_ms / 1000 + 1,
            "server_settings": {
                "statement_timeout": str(settings.db_statement_timeout_ms),
                "idle_in_transaction_session_timeout": str(settings.db_statement_timeout_ms * 6),
                "application_name": application_name or settings.service_name,
            },
        },
    )


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Return the session factory; objects stay usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
