"""The kit's engine against real Postgres: a failed statement never shows its parameters."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

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
