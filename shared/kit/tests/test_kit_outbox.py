"""The outbox table, its migration helpers, enqueue + NOTIFY, and retention (real Postgres)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from agora_kit.db import create_engine, make_metadata
from agora_kit.outbox import (
    advisory_lock_key,
    create_outbox_table,
    decode_headers,
    delete_published,
    drop_outbox_table,
    encode_headers,
    enqueue,
    notify_channel,
    outbox_table,
    run_retention,
    scrub_published,
)
from agora_kit.settings import ServiceSettings
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.schema import CreateIndex, CreateTable, SchemaItem

# -- unit ----------------------------------------------------------------------------------


def test_headers_round_trip_text_and_binary() -> None:
    headers = [("ce_id", b"abc"), ("blob", b"\xff\x00\xfe"), ("empty", b"")]
    stored = encode_headers(headers)
    assert stored[0] == ["ce_id", "abc"]
    assert stored[1] == ["blob", {"base64": "/wD+"}]
    assert decode_headers(stored) == headers
    assert decode_headers(None) == []


def test_decode_headers_rejects_malformed_base64() -> None:
    with pytest.raises(ValueError, match="malformed"):
        decode_headers([["x", {"base64": "not base64!"}]])


def test_channel_and_lock_key_differ_per_table() -> None:
    metadata = make_metadata()
    users, items = outbox_table(metadata, "users_outbox"), outbox_table(metadata, "items_outbox")
    assert notify_channel(users) != notify_channel(items)
    assert advisory_lock_key(users) != advisory_lock_key(items)
    assert -(2**63) <= advisory_lock_key(users) < 2**63
    long_a = outbox_table(make_metadata(), "o" * 60 + "a")
    long_b = outbox_table(make_metadata(), "o" * 60 + "b")
    assert len(notify_channel(long_a).encode()) <= 63
    assert notify_channel(long_a) != notify_channel(long_b)


def _ddl(element: CreateTable | CreateIndex) -> str:
    return str(element.compile(dialect=PGDialect()))  # type: ignore[no-untyped-call]


def test_table_has_partial_unpublished_index() -> None:
    table = outbox_table(make_metadata())
    ddl = [_ddl(CreateIndex(i)) for i in table.indexes]
    assert "CREATE INDEX ix_outbox_unpublished ON outbox (id) WHERE published_at IS NULL" in ddl
    assert "UNIQUE (event_id)" in _ddl(CreateTable(table))


class _RecordingOp:
    """Records what a migration would do (stands in for ``alembic.op``)."""

    def __init__(self, metadata: sa.MetaData) -> None:
        self.metadata = metadata
        self.dropped: list[str] = []

    def create_table(self, table_name: str, *columns: SchemaItem, **kw: Any) -> sa.Table:
        return sa.Table(table_name, self.metadata, *columns, **kw)

    def create_index(
        self, index_name: str, table_name: str, columns: Sequence[str], **kw: Any
    ) -> sa.Index:
        table = self.metadata.tables[table_name]
        return sa.Index(index_name, *(table.c[c] for c in columns), **kw)

    def drop_table(self, table_name: str, **kw: Any) -> None:
        self.dropped.append(table_name)


def test_migration_helper_builds_the_same_table() -> None:
    op = _RecordingOp(sa.MetaData())
    create_outbox_table(op, "outbox")
    migrated = op.metadata.tables["outbox"]
    defined = outbox_table(make_metadata())
    assert _ddl(CreateTable(migrated)) == _ddl(CreateTable(defined))
    assert sorted(_ddl(CreateIndex(i)) for i in migrated.indexes) == sorted(
        _ddl(CreateIndex(i)) for i in defined.indexes
    )
    drop_outbox_table(op, "outbox")
    assert op.dropped == ["outbox"]


# -- integration ---------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def engine(create_database: Callable[[str], str]) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh database for this module."""
    eng = create_engine(ServiceSettings(database_url=create_database("kit_outbox")))
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def table(engine: AsyncEngine) -> sa.Table:
    """A fresh outbox table with a unique name (own NOTIFY channel)."""
    t = outbox_table(make_metadata(), f"outbox_{uuid.uuid4().hex[:8]}")
    async with engine.begin() as conn:
        await conn.run_sync(t.metadata.create_all)
    return t


@pytest.mark.asyncio(loop_scope="session")
async def test_enqueue_writes_row_and_notifies_only_at_commit(
    engine: AsyncEngine, table: sa.Table
) -> None:
    notified: asyncio.Queue[str] = asyncio.Queue()
    async with engine.connect() as listening:
        await listening.execution_options(isolation_level="AUTOCOMMIT")
        listener: Any = (await listening.get_raw_connection()).driver_connection
        # asyncpg calls back with (connection, pid, channel, payload).
        await listener.add_listener(notify_channel(table), lambda *a: notified.put_nowait(a[2]))
        event_id = uuid.uuid4()
        async with engine.connect() as conn:
            await enqueue(
                conn,
                table,
                topic="t",
                key="42",
                value=b"{}",
                headers=[("ce_id", str(event_id).encode())],
                event_id=event_id,
            )
            await conn.rollback()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(notified.get(), 0.5)  # rolled back: no wake-up

        async with engine.begin() as conn:
            await enqueue(conn, table, topic="t", key=b"\x00k", value=b"v", event_id=event_id)
        assert await asyncio.wait_for(notified.get(), 5) == notify_channel(table)
        await listening.invalidate()  # never hand a LISTENing connection back to the pool

    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(table))).mappings().all()
    assert len(rows) == 1
    row = rows[0]
    assert (row["topic"], row["key"], row["value"], row["event_id"]) == (
        "t",
        b"\x00k",
        b"v",
        event_id,
    )
    assert (row["attempts"], row["published_at"], row["headers"]) == (0, None, [])


async def _backdate(engine: AsyncEngine, table: sa.Table, ids: list[int], days: float) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(table)
            .where(table.c.id.in_(ids))
            .values(published_at=sa.func.now() - timedelta(days=days))
        )


@pytest.mark.asyncio(loop_scope="session")
async def test_retention_scrubs_then_deletes_published_rows(
    engine: AsyncEngine, table: sa.Table
) -> None:
    async with engine.begin() as conn:
        for n in range(4):
            await enqueue(conn, table, topic="t", key=str(n), value=b"pii", headers=[("h", b"x")])
        ids = list((await conn.execute(sa.select(table.c.id).order_by(table.c.id))).scalars())
    old, ancient, recent, pending = ids
    await _backdate(engine, table, [old], days=8)
    await _backdate(engine, table, [ancient], days=40)
    await _backdate(engine, table, [recent], days=1)

    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        scrubbed, deleted = await run_retention(
            conn, table, retention=timedelta(days=7), delete_after=timedelta(days=30)
        )
        # Both past 7 days are scrubbed first; the one past 30 days is then deleted.
        assert (scrubbed, deleted) == (2, 1)
        again = await scrub_published(conn, table, older_than=timedelta(days=7))
        assert again == 0  # idempotent: scrubbed rows are not touched again
        assert await delete_published(conn, table, older_than=timedelta(days=30)) == 0
        rows = {r["id"]: r for r in (await conn.execute(sa.select(table))).mappings().all()}
    assert set(rows) == {old, recent, pending}
    assert (rows[old]["value"], rows[old]["headers"]) == (None, None)
    assert rows[old]["scrubbed_at"] is not None
    assert rows[old]["key"] == b"0"  # ids stay for audit
    for kept in (recent, pending):
        assert (rows[kept]["value"], rows[kept]["headers"]) == (b"pii", [["h", "x"]])
