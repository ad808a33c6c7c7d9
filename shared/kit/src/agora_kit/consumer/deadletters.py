"""Dead letters: messages a consumer gave up on, kept for an operator to replay or discard.

Storing a dead letter also publishes it to ``<group>.dead-letter`` through the outbox, in the
same transaction as the row: the feed and the table never disagree. Replaying hands the
original message (same key, value, headers, so the same event ``id``) to the consumer's retry
path: the consumer handles it again and its deduplication still holds.
"""

from __future__ import annotations

import builtins
import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from agora_contract.topics import dead_letter_topic
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agora_kit.consumer import retry
from agora_kit.consumer.deadletter_feed import (
    feed_headers,
)
from agora_kit.consumer.deadletter_table import DeadLetterStatus, ErrorKind
from agora_kit.consumer.retry import Executor, Record
from agora_kit.outbox import REDACTED as REDACTED
from agora_kit.outbox import enqueue, redact_secrets

#: Errors are cut to this length in the row and the feed header.
MAX_ERROR_CHARS = 2000


class DeadLetterNotFound(LookupError):  # noqa: N818 - reads better at call sites
    """No dead letter has this id."""


class DeadLetterNotPending(Exception):  # noqa: N818
    """Only a pending dead letter can be replayed or discarded."""

    def __init__(self, dead_letter_id: int, status: DeadLetterStatus) -> None:
        super().__init__(f"dead letter {dead_letter_id} is {status}, not pending")
        self.status = status


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One stored dead letter."""

    id: int
    group: str
    record: Record
    event_id: uuid.UUID | None
    event_type: str | None
    error: str
    error_kind: ErrorKind
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime
    status: DeadLetterStatus
    replayed_at: datetime | None
    discarded_at: datetime | None


async def store_dead_letter(
    conn: Executor,
    table: sa.Table,
    *,
    outbox: sa.Table,
    group: str,
    record: Record,
    error: str,
    kind: ErrorKind,
    attempts: int,
    event_id: uuid.UUID | None = None,
    event_type: str | None = None,
    first_failed_at: datetime | None = None,
) -> int | None:
    """Store a dead letter and queue its feed copy, in the caller's transaction.

    Returns the new id, or None when this message is already a pending dead letter (a
    redelivery): then nothing is written and nothing is published again.
    """
    error = error[:MAX_ERROR_CHARS]
    # Dead letters are read by operators and fed to a topic outside the commands' ACL:
    # one-time tokens and the like never go there.
    record = dataclasses.replace(record, value=redact_secrets(record.value))
    stmt = (
        pg_insert(table)
        .values(
            consumer_group=group,
            event_id=event_id,
            event_type=event_type,
            error=error,
            error_kind=kind.value,
            attempts=attempts,
            first_failed_at=first_failed_at if first_failed_at is not None else sa.func.now(),
            last_failed_at=sa.func.now(),
            status=DeadLetterStatus.PENDING.value,
            **retry.record_values(record),
        )
        .on_conflict_do_nothing(
            index_elements=["consumer_group", "topic", "partition", "offset"],
            index_where=sa.text("status = 'pending'"),
        )
        .returning(table.c.id)
    )
    new_id = (await conn.execute(stmt)).scalar_one_or_none()
    if new_id is None:
        return None
    await enqueue(
        conn,
        outbox,
        topic=dead_letter_topic(group),
        key=record.key,
        # A tombstone has no value to copy; the feed message then carries an empty one.
        value=record.value or b"",
        headers=feed_headers(record, group=group, error=error, kind=kind, attempts=attempts),
    )
    return int(new_id)


def _dead_letter(row: Any) -> DeadLetter:
    return DeadLetter(
        id=row.id,
        group=row.consumer_group,
        record=retry.record_from_row(row),
        event_id=row.event_id,
        event_type=row.event_type,
        error=row.error,
        error_kind=ErrorKind(row.error_kind),
        attempts=row.attempts,
        first_failed_at=row.first_failed_at,
        last_failed_at=row.last_failed_at,
        status=DeadLetterStatus(row.status),
        replayed_at=row.replayed_at,
        discarded_at=row.discarded_at,
    )


class DeadLetterStore:
    """The dead letters of one service database: list, show, replay, discard."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        *,
        table: sa.Table,
        retry_table: sa.Table,
    ) -> None:
        self._session_factory = session_factory
        self.table = table
        self.retry_table = retry_table

    def _filters(
        self, group: str | None, status: DeadLetterStatus | None
    ) -> builtins.list[sa.ColumnElement[bool]]:
        filters: builtins.list[sa.ColumnElement[bool]] = []
        if group is not None:
            filters.append(self.table.c.consumer_group == group)
        if status is not None:
            filters.append(self.table.c.status == status.value)
        return filters

    async def list(
        self,
        *,
        group: str | None = None,
        status: DeadLetterStatus | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> builtins.list[DeadLetter]:
        """Return dead letters, newest first, optionally of one group and status."""
        stmt = (
            sa.select(self.table)
            .where(*self._filters(group, status))
            .order_by(self.table.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        async with self._session_factory() as session:
            rows = (await session.execute(stmt)).all()
        return [_dead_letter(row) for row in rows]

    async def count(
        self, *, group: str | None = None, status: DeadLetterStatus | None = None
    ) -> int:
        """Return how many dead letters match."""
        stmt = sa.select(sa.func.count()).select_from(self.table)
        stmt = stmt.where(*self._filters(group, status))
        async with self._session_factory() as session:
            return int((await session.execute(stmt)).scalar_one())

    async def get(self, dead_letter_id: int, *, group: str | None = None) -> DeadLetter | None:
        """Return one dead letter, or None."""
        stmt = sa.select(self.table).where(
            self.table.c.id == dead_letter_id, *self._filters(group, None)
        )
        async with self._session_factory() as session:
            row = (await session.execute(stmt)).one_or_none()
        return None if row is None else _dead_letter(row)

    async def _lock_pending(
        self, session: AsyncSession, dead_letter_id: int, group: str | None
    ) -> DeadLetter:
        stmt = (
            sa.select(self.table)
            .where(self.table.c.id == dead_letter_id, *self._filters(group, None))
            .with_for_update()
        )
        row = (await session.execute(stmt)).one_or_none()
        if row is None:
            raise DeadLetterNotFound(dead_letter_id)
        letter = _dead_letter(row)
        if letter.status is not DeadLetterStatus.PENDING:
            raise DeadLetterNotPending(dead_letter_id, letter.status)
        return letter

    async def _mark(
        self, session: AsyncSession, dead_letter_id: int, status: DeadLetterStatus
    ) -> DeadLetter:
        stamp = "replayed_at" if status is DeadLetterStatus.REPLAYED else "discarded_at"
        stmt = (
            sa.update(self.table)
            .where(self.table.c.id == dead_letter_id)
            .values({"status": status.value, stamp: sa.func.now()})
            .returning(*self.table.c)
        )
        return _dead_letter((await session.execute(stmt)).one())

    async def replay(self, dead_letter_id: int, *, group: str | None = None) -> DeadLetter:
        """Hand a pending dead letter back to its consumer and mark it replayed."""
        async with self._session_factory.begin() as session:
            letter = await self._lock_pending(session, dead_letter_id, group)
            # Due at once, attempts start afresh; if it is still waiting from a redelivery,
            # that row handles it and this insert is a no-op.
            await retry.schedule(
                session,
                self.retry_table,
                group=letter.group,
                record=letter.record,
                attempts=0,
                delay_s=0,
                error=None,
                event_id=letter.event_id,
                event_type=letter.event_type,
                first_failed_at=letter.first_failed_at,
                dead_letter_id=letter.id,
            )
            return await self._mark(session, dead_letter_id, DeadLetterStatus.REPLAYED)

    async def discard(self, dead_letter_id: int, *, group: str | None = None) -> DeadLetter:
        """Mark a pending dead letter discarded (kept for the record, never handled)."""
        async with self._session_factory.begin() as session:
            await self._lock_pending(session, dead_letter_id, group)
            return await self._mark(session, dead_letter_id, DeadLetterStatus.DISCARDED)
