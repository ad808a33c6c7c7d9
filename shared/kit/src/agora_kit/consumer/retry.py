"""The consumer retry store: failed messages wait in ``consumer_retry`` until ``next_attempt_at``.

A transiently failing message is written here (and its offset committed), so the messages
behind it keep flowing; the consumer's retry worker claims due rows with ``SKIP LOCKED`` and
a lease, so several consumer processes share the work and a crashed one's rows come back.
Replaying a dead letter also goes through this table.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.schema import SchemaItem
from sqlalchemy.types import TypeEngine

from agora_kit._tables import MigrationOps
from agora_kit.outbox import decode_headers, encode_headers

RETRY_TABLE_NAME = "consumer_retry"

Executor = AsyncSession | AsyncConnection


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed message, as it came from Kafka (what retries and dead letters keep)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with jitter: ``base * multiplier**(attempt - 1)``, capped."""

    base_s: float = 1.0
    max_s: float = 300.0
    multiplier: float = 2.0
    #: Spread retries of many messages that failed together (a dependency outage).
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.max_s < self.base_s or self.multiplier < 1:
            raise ValueError("backoff needs 0 < base_s <= max_s and multiplier >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("backoff jitter must be in [0, 1)")

    def delay(self, attempt: int) -> float:
        """Return the wait after failed attempt number ``attempt`` (1-based)."""
        exponent = min(max(attempt, 1) - 1, 64)  # bounded: no float overflow on huge counts
        raw = min(self.max_s, self.base_s * self.multiplier**exponent)
        # Not security relevant: jitter only de-synchronises retries.
        spread = random.uniform(-self.jitter, self.jitter)  # noqa: S311
        return max(0.0, raw * (1 + spread))


@dataclass(frozen=True, slots=True)
class RetryRow:
    """A message waiting for its next attempt."""

    id: int
    group: str
    record: Record
    event_id: uuid.UUID | None
    event_type: str | None
    attempts: int
    first_failed_at: datetime | None
    last_error: str | None
    dead_letter_id: int | None


def _columns_and_constraints(name: str) -> list[SchemaItem]:
    # Explicit constraint names: the table ``retry_table`` builds and the one a migration
    # creates are identical whatever naming convention the service's MetaData has.
    return [
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), nullable=False),
        *record_columns(),
        #: Attempts made so far (0 for a replayed dead letter, which starts afresh).
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        #: Set when the row comes from replaying this dead letter.
        sa.Column("dead_letter_id", sa.BigInteger, nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name=f"pk_{name}"),
        # A message redelivered after a rebalance is scheduled once, not twice.
        sa.UniqueConstraint(
            "consumer_group", "topic", "partition", "offset", name=f"uq_{name}_position"
        ),
    ]


def _index_specs(name: str) -> list[tuple[str, list[str]]]:
    # The retry worker's only query: this group's rows that are due.
    return [(f"ix_{name}_due", ["consumer_group", "next_attempt_at"])]


def retry_table(metadata: sa.MetaData, name: str = RETRY_TABLE_NAME) -> sa.Table:
    """Define the consumer retry table on the service's ``metadata`` and return it."""
    table = sa.Table(name, metadata, *_columns_and_constraints(name))
    for index_name, columns in _index_specs(name):
        sa.Index(index_name, *(table.c[c] for c in columns))
    return table


def create_retry_table(op: MigrationOps, name: str = RETRY_TABLE_NAME) -> None:
    """Create the consumer retry table and its index (from a service's first migration)."""
    op.create_table(name, *_columns_and_constraints(name))
    for index_name, columns in _index_specs(name):
        op.create_index(index_name, name, columns)


def drop_retry_table(op: MigrationOps, name: str = RETRY_TABLE_NAME) -> None:
    """Drop the consumer retry table."""
    op.drop_table(name)


#: The columns that keep a consumed record, as (name, type, nullable), in the tables' order.
_RECORD_COLUMNS: tuple[tuple[str, type[TypeEngine[Any]], bool], ...] = (
    ("consumer_group", sa.Text, False),
    ("topic", sa.Text, False),
    ("partition", sa.Integer, False),
    ("offset", sa.BigInteger, False),
    ("key", sa.LargeBinary, True),
    # NULL for a tombstone (a message without value is malformed for us).
    ("value", sa.LargeBinary, True),
    ("headers", JSONB, False),
    ("event_id", sa.Uuid, True),
    ("event_type", sa.Text, True),
)


def record_columns() -> list[sa.Column[Any]]:
    """Return fresh columns that keep a consumed record (shared with the dead-letter table)."""
    # Fresh objects on every call: a Column belongs to one table.
    return [sa.Column(name, type_, nullable=nullable) for name, type_, nullable in _RECORD_COLUMNS]


def record_values(record: Record) -> dict[str, Any]:
    """Return the column values that keep ``record`` (shared with the dead-letter table)."""
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key,
        "value": record.value,
        "headers": encode_headers(record.headers),
    }


def record_from_row(row: Any) -> Record:
    """Rebuild the ``Record`` kept in a retry or dead-letter row."""
    return Record(
        topic=row.topic,
        partition=row.partition,
        offset=row.offset,
        key=row.key,
        value=row.value,
        headers=tuple(decode_headers(row.headers)),
    )


async def schedule(
    conn: Executor,
    table: sa.Table,
    *,
    group: str,
    record: Record,
    attempts: int,
    delay_s: float,
    error: str | None,
    event_id: uuid.UUID | None = None,
    event_type: str | None = None,
    first_failed_at: datetime | None = None,
    dead_letter_id: int | None = None,
) -> bool:
    """Add ``record`` for another attempt after ``delay_s``; False if it is already waiting."""
    stmt = (
        pg_insert(table)
        .values(
            consumer_group=group,
            event_id=event_id,
            event_type=event_type,
            attempts=attempts,
            first_failed_at=first_failed_at if first_failed_at is not None else sa.func.now(),
            next_attempt_at=sa.func.now() + timedelta(seconds=delay_s),
            last_error=error,
            dead_letter_id=dead_letter_id,
            **record_values(record),
        )
        .on_conflict_do_nothing(constraint=f"uq_{table.name}_position")
        .returning(table.c.id)
    )
    return (await conn.execute(stmt)).scalar_one_or_none() is not None


async def claim_due(
    conn: Executor, table: sa.Table, *, group: str, limit: int, lease_s: float
) -> list[RetryRow]:
    """Lease up to ``limit`` due rows of ``group`` for ``lease_s`` (others skip them)."""
    due = (
        sa.select(table.c.id)
        .where(table.c.consumer_group == group, table.c.next_attempt_at <= sa.func.now())
        .order_by(table.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    # The lease pushes next_attempt_at past the handler's worst time: if this process dies
    # mid-attempt, the row becomes due again instead of being lost.
    stmt = (
        sa.update(table)
        .where(table.c.id.in_(due))
        .values(next_attempt_at=sa.func.now() + timedelta(seconds=lease_s))
        .returning(*table.c)
    )
    rows = (await conn.execute(stmt)).all()
    return sorted((_retry_row(row) for row in rows), key=lambda r: r.id)


def _retry_row(row: Any) -> RetryRow:
    return RetryRow(
        id=row.id,
        group=row.consumer_group,
        record=record_from_row(row),
        event_id=row.event_id,
        event_type=row.event_type,
        attempts=row.attempts,
        first_failed_at=row.first_failed_at,
        last_error=row.last_error,
        dead_letter_id=row.dead_letter_id,
    )


async def reschedule(
    conn: Executor, table: sa.Table, row_id: int, *, attempts: int, delay_s: float, error: str
) -> None:
    """Record a failed attempt and when the next one is due."""
    await conn.execute(
        sa.update(table)
        .where(table.c.id == row_id)
        .values(
            attempts=attempts,
            next_attempt_at=sa.func.now() + timedelta(seconds=delay_s),
            last_error=error,
        )
    )


async def delete(conn: Executor, table: sa.Table, row_id: int) -> None:
    """Remove a row whose message succeeded, was dead-lettered or is no longer handled."""
    await conn.execute(sa.delete(table).where(table.c.id == row_id))


async def count_waiting(conn: Executor, table: sa.Table, *, group: str) -> int:
    """Return how many messages of ``group`` wait for another attempt."""
    stmt = sa.select(sa.func.count()).select_from(table).where(table.c.consumer_group == group)
    return int((await conn.execute(stmt)).scalar_one())
