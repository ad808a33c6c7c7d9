"""Dead letters against real Postgres: storing with the feed row, the admin routes, migrations."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio
import sqlalchemy as sa
from agora_kit.consumer import consumer_tables, create_consumer_tables, drop_consumer_tables
from agora_kit.consumer.deadletter_table import ErrorKind
from agora_kit.consumer.deadletters import DeadLetterStore, store_dead_letter
from agora_kit.consumer.inbox import create_inbox_table, drop_inbox_table, inbox_table
from agora_kit.consumer.retry import Record
from agora_kit.consumer.routes import dead_letter_router
from agora_kit.db import create_engine, create_session_factory, make_metadata
from agora_kit.error_handlers import install_error_handlers
from agora_kit.errors import Forbidden
from agora_kit.outbox import decode_headers, outbox_table
from agora_kit.settings import ServiceSettings
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations
from fastapi import FastAPI, Header
from sqlalchemy.ext.asyncio import AsyncEngine

METADATA = make_metadata()
OUTBOX = outbox_table(METADATA)
TABLES = consumer_tables(METADATA, outbox=OUTBOX)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def engine(create_database: Callable[[str], str]) -> AsyncIterator[AsyncEngine]:
    """An engine on this module's database, with the outbox and the consumer tables."""
    eng = create_engine(ServiceSettings(database_url=create_database("kit_deadletters")))
    async with eng.begin() as conn:
        await conn.run_sync(METADATA.create_all)
    try:
        yield eng
    finally:
        await eng.dispose()


def _record(offset: int, value: bytes = b'{"broken": true') -> Record:
    return Record(
        topic="users.events",
        partition=1,
        offset=offset,
        key=b"42",
        value=value,
        headers=(("ce_id", b"abc"), ("bin", b"\xff\x00")),
    )


async def _store(engine: AsyncEngine, group: str, record: Record, **kw: Any) -> int | None:
    async with engine.begin() as conn:
        return await store_dead_letter(
            conn,
            TABLES.dead_letter,
            outbox=OUTBOX,
            group=group,
            record=record,
            error=kw.pop("error", "InvalidEvent: bad"),
            kind=kw.pop("kind", ErrorKind.MALFORMED),
            attempts=kw.pop("attempts", 0),
            **kw,
        )


async def _feed_rows(engine: AsyncEngine, group: str) -> list[Any]:
    async with engine.connect() as conn:
        query = sa.select(OUTBOX).where(OUTBOX.c.topic == f"{group}.dead-letter")
        return list((await conn.execute(query.order_by(OUTBOX.c.id))).all())


@pytest.mark.asyncio(loop_scope="session")
async def test_storing_queues_the_feed_copy_once_per_pending_letter(engine: AsyncEngine) -> None:
    group = f"g-{uuid.uuid4().hex[:8]}"
    record = _record(7)
    first = await _store(engine, group, record, error="x" * 5000)
    assert first is not None
    # The same message again (redelivered before its commit): stored and published once.
    assert await _store(engine, group, record) is None
    (row,) = await _feed_rows(engine, group)
    assert (row.key, row.value, row.event_id) == (b"42", record.value, None)
    headers = decode_headers(row.headers)
    assert headers[:2] == [("ce_id", b"abc"), ("bin", b"\xff\x00")]
    extra = dict(headers[2:])
    assert extra["x-agora-error"] == b"x" * 2000
    assert extra["x-agora-error-kind"] == b"malformed"
    assert extra["x-agora-original-topic"] == b"users.events"
    assert extra["x-agora-original-partition"] == b"1"
    assert extra["x-agora-original-offset"] == b"7"

    store = DeadLetterStore(
        create_session_factory(engine), table=TABLES.dead_letter, retry_table=TABLES.retry
    )
    letter = await store.get(first)
    assert letter is not None
    assert letter.record == record
    assert len(letter.error) == 2000
    # Once it is no longer pending, the same message may fail again: a new letter.
    await store.discard(first)
    second = await _store(engine, group, record)
    assert second is not None
    assert second != first
    assert len(await _feed_rows(engine, group)) == 2


def _app(engine: AsyncEngine, group: str | None) -> FastAPI:
    store = DeadLetterStore(
        create_session_factory(engine), table=TABLES.dead_letter, retry_table=TABLES.retry
    )

    def get_store() -> DeadLetterStore:
        return store

    def require_admin(x_admin: str | None = Header(default=None)) -> None:
        if x_admin != "yes":
            raise Forbidden("admins only")

    app = FastAPI()
    install_error_handlers(app, retry_after_s=5)
    app.include_router(
        dead_letter_router(store=get_store, admin=require_admin, group=group),
        prefix="/api/v1/notifications/dead-letters",
    )
    return app


@pytest.mark.asyncio(loop_scope="session")
async def test_admin_routes_list_show_replay_and_discard(engine: AsyncEngine) -> None:
    group, other = f"g-{uuid.uuid4().hex[:8]}", f"o-{uuid.uuid4().hex[:8]}"
    event_id = uuid.uuid4()
    ids = [
        await _store(engine, group, _record(1)),
        await _store(
            engine,
            group,
            _record(2, b'{"id": "ok"}'),
            kind=ErrorKind.PERMANENT,
            error="PermanentError: 550",
            attempts=1,
            event_id=event_id,
            event_type="agora.users.user.registered.v1",
        ),
        await _store(engine, group, _record(3)),
    ]
    foreign = await _store(engine, other, _record(1))
    base = "/api/v1/notifications/dead-letters"
    admin = {"X-Admin": "yes"}
    transport = httpx.ASGITransport(app=_app(engine, group))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get(base)).status_code == 403

        listed = await client.get(base, headers=admin, params={"limit": 2})
        assert listed.status_code == 200, listed.text
        page = listed.json()
        assert page["total"] == 3
        assert [item["id"] for item in page["items"]] == [ids[2], ids[1]]  # newest first

        shown = await client.get(f"{base}/{ids[1]}", headers=admin)
        assert shown.status_code == 200
        body = shown.json()
        assert body["group"] == group
        assert (body["topic"], body["partition"], body["offset"]) == ("users.events", 1, 2)
        assert (body["key"], body["value"]) == ("42", '{"id": "ok"}')
        assert body["event_id"] == str(event_id)
        assert (body["error_kind"], body["status"], body["attempts"]) == ("permanent", "pending", 1)
        assert {"name": "bin", "value": "\ufffd\x00"} in body["headers"]

        missing = await client.get(f"{base}/{foreign}", headers=admin)  # another group's
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")

        replayed = await client.post(f"{base}/{ids[1]}/replay", headers=admin)
        assert replayed.status_code == 200
        assert replayed.json()["status"] == "replayed"
        assert replayed.json()["replayed_at"] is not None
        assert (await client.post(f"{base}/{ids[1]}/replay", headers=admin)).status_code == 409
        assert (await client.post(f"{base}/999999/replay", headers=admin)).status_code == 404

        discarded = await client.delete(f"{base}/{ids[0]}", headers=admin)
        assert discarded.status_code == 200
        assert discarded.json()["status"] == "discarded"
        assert (await client.delete(f"{base}/{ids[0]}", headers=admin)).status_code == 409
        assert (await client.post(f"{base}/{ids[0]}/replay", headers=admin)).status_code == 409

        pending = (await client.get(base, headers=admin, params={"status": "pending"})).json()
        assert [item["id"] for item in pending["items"]] == [ids[2]]
        assert (await client.get(base, headers=admin, params={"limit": 0})).status_code == 422

    # The replay handed the original message to the group's retry path, due now.
    async with engine.connect() as conn:
        retry = TABLES.retry
        query = sa.select(retry, sa.func.now() >= retry.c.next_attempt_at).where(
            retry.c.consumer_group == group
        )
        (row,) = (await conn.execute(query)).all()
    assert (row.offset, row.value, row.attempts, row.dead_letter_id) == (
        2,
        b'{"id": "ok"}',
        0,
        ids[1],
    )
    assert row.event_id == event_id
    assert row[-1] is True


@pytest.mark.asyncio(loop_scope="session")
async def test_migration_helpers_build_the_tables_the_metadata_describes(
    create_database: Callable[[str], str],
) -> None:
    metadata = make_metadata()
    tables = consumer_tables(metadata, outbox=outbox_table(metadata))
    inbox_table(metadata)
    metadata.remove(tables.outbox)  # the outbox has its own helper (part "data")
    engine = create_engine(ServiceSettings(database_url=create_database("kit_dl_migrations")))
    try:
        async with engine.begin() as conn:
            assert await conn.run_sync(_create_and_compare, metadata) == []
        async with engine.begin() as conn:
            assert await conn.run_sync(_drop) == []
    finally:
        await engine.dispose()


def _create_and_compare(conn: sa.Connection, metadata: sa.MetaData) -> list[Any]:
    context = MigrationContext.configure(conn)
    op = Operations(context)
    create_consumer_tables(op)
    create_inbox_table(op)
    assert sorted(sa.inspect(conn).get_table_names()) == ["consumer_retry", "dead_letter", "inbox"]
    return list(compare_metadata(context, metadata))


def _drop(conn: sa.Connection) -> list[str]:
    op = Operations(MigrationContext.configure(conn))
    drop_consumer_tables(op)
    drop_inbox_table(op)
    return list(sa.inspect(conn).get_table_names())
