"""The kit's engine against real Postgres: a failed statement never shows its parameters."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

import agora_kit.db
import pytest
import sqlalchemy as sa
import sqlalchemy.exc
from agora_kit.db import create_engine
from agora_kit.error_handlers import unhandled_problem
from agora_kit.settings import ServiceSettings


@pytest.mark.asyncio(loop_scope="session")
async def test_failed_statement_hides_bound_parameters(
    create_database: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(ServiceSettings(database_url=create_database("kit_db")))
    secret = f"$argon2id$v=19$m=65536,t=3,p=4${uuid.uuid4().hex}"
    try:
        with pytest.raises(sqlalchemy.exc.DBAPIError) as raised:
            async with engine.connect() as conn:
                # Postgres's own message names the missing table, not the value.
                await conn.execute(
                    sa.text("INSERT INTO no_such_table (password_hash) VALUES (:hash)"),
                    {"hash": secret},
                )
    finally:
        await engine.dispose()

    assert "no_such_table" in str(raised.value)
    assert "SQL parameters hidden" in str(raised.value)
    assert secret not in str(raised.value)

    # The kit's last-resort handler logs the exception with its traceback.
    scope = {"type": "http", "method": "POST", "path": "/api/v1/users", "headers": []}
    with caplog.at_level(logging.ERROR, logger="agora.errors"):
        response = unhandled_problem(scope, raised.value, retry_after_s=1)
    assert response.status_code == 500
    assert "no_such_table" in caplog.text
    assert secret not in caplog.text


@pytest.mark.asyncio(loop_scope="session")
async def test_an_idle_connection_killed_by_the_server_is_replaced_on_checkout(
    create_database: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = create_database("kit_db")
    # Every connection that went back to the pool counts as idle: it is pinged on checkout.
    monkeypatch.setattr(agora_kit.db, "PING_AFTER_IDLE_S", 0.0)
    engine = create_engine(ServiceSettings(database_url=url, db_pool_size=1))
    admin = create_engine(ServiceSettings(database_url=url, db_pool_size=1))
    try:
        async with engine.connect() as conn:
            first = await conn.scalar(sa.text("SELECT pg_backend_pid()"))
        async with admin.connect() as conn:
            await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
            await conn.commit()
        # The pooled connection is dead; the ping finds out and the pool opens another.
        async with engine.connect() as conn:
            second = await conn.scalar(sa.text("SELECT pg_backend_pid()"))
        assert second != first
    finally:
        await engine.dispose()
        await admin.dispose()


@pytest.mark.asyncio(loop_scope="session")
async def test_a_connection_in_steady_use_is_not_pinged(
    create_database: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(ServiceSettings(database_url=create_database("kit_db")))
    pings: list[Any] = []
    real_ping = engine.dialect.do_ping

    def counting_ping(dbapi_connection: Any) -> bool:
        pings.append(dbapi_connection)
        return real_ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counting_ping)
    try:
        for _ in range(5):
            async with engine.connect() as conn:
                assert await conn.scalar(sa.text("SELECT 1")) == 1
    finally:
        await engine.dispose()
    # Checked out again well within PING_AFTER_IDLE_S: no round trip before each use.
    assert pings == []
