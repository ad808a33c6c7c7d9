"""Database plumbing: one engine per process, an explicit naming convention, session factories."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import MetaData, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError
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


#: A connection idle longer than this is pinged on checkout (Postgres may have restarted or
#: reaped it meanwhile); one in steady use is not, which saves a round trip per transaction.
PING_AFTER_IDLE_S = 1.0
_CHECKED_IN_AT = "agora_checked_in_at"
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _no_tls_needed(url: URL) -> bool:
    """Whether the URL names a loopback host or a Unix socket and says nothing about TLS.

    asyncpg's default (``prefer``) first asks every new connection for TLS; a loopback server
    without it answers no, which costs a round trip per connect for nothing.
    """
    if any(key in url.query for key in ("ssl", "sslmode")):
        return False
    host = url.host or str(url.query.get("host", ""))
    return not host or host.startswith("/") or host in _LOOPBACK_HOSTS


def _ping_after_idle(engine: AsyncEngine, idle_s: float) -> None:
    """Ping a connection on checkout only when it sat idle in the pool over ``idle_s``.

    ``pool_pre_ping`` pings on every checkout: a round trip per transaction. A restarted or
    reaped server only breaks connections that waited in the pool, so pinging those keeps the
    recovery (sqlalchemy #5776: the pool replaces a dead connection instead of handing it out)
    at no cost under load. A connection that dies mid-use raises as before: SQLAlchemy then
    invalidates the pool and the request gets the 503 path.
    """
    sync_engine = engine.sync_engine
    dialect = sync_engine.dialect

    @event.listens_for(sync_engine, "checkin")
    def _checkin(dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    @event.listens_for(sync_engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        checked_in = record.info.get(_CHECKED_IN_AT)
        if checked_in is None or time.monotonic() - checked_in <= idle_s:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError(f"ping after idle failed: {exc!r}") from exc


def create_engine(settings: ServiceSettings, *, application_name: str | None = None) -> AsyncEngine:
    """Create the process engine: a fixed pool, idle pings, recycle, connect/statement timeouts."""
    url = async_url(settings.database_url)
    connect_args: dict[str, Any] = {
        "timeout": settings.db_connect_timeout_s,
        "command_timeout": settings.db_statement_timeout_ms / 1000 + 1,
        "server_settings": {
            "statement_timeout": str(settings.db_statement_timeout_ms),
            "idle_in_transaction_session_timeout": str(settings.db_statement_timeout_ms * 6),
            "application_name": application_name or settings.service_name,
        },
    }
    if _no_tls_needed(url):
        connect_args["ssl"] = False
    engine = create_async_engine(
        url,
        # A failed statement's exception text would otherwise carry its bound parameters
        # (password and token hashes, addresses) into the logs the kit writes.
        hide_parameters=True,
        pool_recycle=settings.db_pool_recycle_s,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_connect_timeout_s,
        connect_args=connect_args,
    )
    _ping_after_idle(engine, PING_AFTER_IDLE_S)
    return engine


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Return the session factory; objects stay usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
