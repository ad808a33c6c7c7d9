"""Writing to the outbox: rows added in the caller's transaction, the relay woken at commit."""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from agora_kit.outbox.table import (
    encode_headers,
    notify_channel,
)


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One message to publish: what ``enqueue_many`` writes as one outbox row."""

    topic: str
    key: str | bytes | None
    value: bytes
    headers: Sequence[tuple[str, bytes]] = field(default_factory=tuple)
    event_id: uuid.UUID | None = None


_PG_PREPARER = postgresql.dialect().identifier_preparer  # type: ignore[no-untyped-call]


@functools.lru_cache(maxsize=32)
def _enqueue_statement(table: sa.Table) -> sa.TextClause:
    """The insert of any number of rows into ``table`` plus the relay's wake-up, as one statement.

    One round trip instead of two, and one text for every batch size, so the statement is
    compiled and prepared once per connection rather than per call. The insert rides as a CTE
    of the notify: a data-modifying CTE always runs to completion, in the rows' order.
    """
    return sa.text(
        f"""
        WITH enqueued AS (
            INSERT INTO {_PG_PREPARER.format_table(table)} (event_id, topic, key, value, headers)
            SELECT m.event_id, m.topic, m.key, m.value, CAST(m.headers AS jsonb)
            FROM unnest(
                CAST(:event_ids AS uuid[]), CAST(:topics AS text[]), CAST(:keys AS bytea[]),
                CAST(:values AS bytea[]), CAST(:headers AS text[])
            ) WITH ORDINALITY AS m(event_id, topic, key, value, headers, n)
            ORDER BY m.n
        )
        SELECT pg_notify(:channel, '')
        """  # noqa: S608 - the table name is quoted by the dialect, every value is bound
    )


async def enqueue_many(
    session: AsyncSession | AsyncConnection, table: sa.Table, messages: Sequence[OutboxMessage]
) -> None:
    """Add ``messages`` as outbox rows in the caller's transaction and wake the relay."""
    if not messages:
        return
    # The notification is delivered at commit only, and folded into one per transaction.
    await session.execute(
        _enqueue_statement(table),
        {
            "event_ids": [m.event_id for m in messages],
            "topics": [m.topic for m in messages],
            "keys": [m.key.encode("utf-8") if isinstance(m.key, str) else m.key for m in messages],
            "values": [m.value for m in messages],
            "headers": [json.dumps(encode_headers(m.headers)) for m in messages],
            "channel": notify_channel(table),
        },
    )


async def enqueue(
    session: AsyncSession | AsyncConnection,
    table: sa.Table,
    *,
    topic: str,
    key: str | bytes | None,
    value: bytes,
    headers: Sequence[tuple[str, bytes]] = (),
    event_id: uuid.UUID | None = None,
) -> None:
    """Add one outbox row in the caller's transaction (it commits with the caller's write)."""
    message = OutboxMessage(topic=topic, key=key, value=value, headers=headers, event_id=event_id)
    await enqueue_many(session, table, [message])


async def pending_stats(
    conn: AsyncSession | AsyncConnection, table: sa.Table
) -> tuple[int, float | None]:
    """Return (unpublished rows, age in seconds of the oldest one, or None when none)."""
    query = sa.select(
        sa.func.count(),
        sa.func.extract("epoch", sa.func.now() - sa.func.min(table.c.created_at)),
    ).where(table.c.published_at.is_(None))
    count, age = (await conn.execute(query)).one()
    return int(count), (float(age) if age is not None else None)
