"""The transactional outbox: a table on the service's MetaData, and the writes that fill it.

A domain write and its outbox rows commit in one transaction; the relay
(``agora_kit.relay``) publishes the rows in ``id`` order and marks them published only
after the broker acknowledged them. ``enqueue`` also issues ``pg_notify`` on a channel
derived from the table name: Postgres delivers it at commit (never for a rolled-back
transaction), which wakes the relay without polling.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from agora_contract.secrets import is_secret_name
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.schema import SchemaItem

from agora_kit._tables import MigrationOps

log = structlog.get_logger(__name__)

#: The default outbox table name (one per service database).
DEFAULT_TABLE_NAME = "outbox"

#: Postgres truncates identifiers (and so channel names) to 63 bytes.
_MAX_IDENTIFIER = 63

REDACTED = "[redacted]"


def redact_secrets(value: bytes | None) -> bytes | None:
    """Return ``value`` with secret fields of a JSON envelope's ``data`` replaced.

    Secret means :func:`agora_contract.secrets.is_secret_name`: the relay scrubs these from
    a row once it is published, and dead letters never hold them.

    Anything that is not a JSON object with a ``data`` object is returned unchanged (the
    very object, so a caller can tell nothing changed). A redacted command cannot be
    replayed as it was: its one-time token is gone on purpose (the user asks for a new link).
    """
    if not value:
        return value
    try:
        doc = json.loads(value)
    except ValueError:
        return value
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, dict) or not any(is_secret_name(k) for k in data):
        return value
    doc["data"] = {k: (REDACTED if is_secret_name(k) else v) for k, v in data.items()}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


#: A stored header value: text when the bytes are UTF-8, else ``{"base64": "..."}``.
StoredHeader = list[Any]


def _columns_and_constraints(name: str) -> list[SchemaItem]:
    # Constraint names are explicit (not left to the naming convention) so the table built
    # by ``outbox_table`` and the one a migration creates are identical.
    return [
        # BIGINT identity: the publish order. Rows may commit out of id order; the relay
        # selects every unpublished row each pass, so a late commit is published late,
        # never lost. Per-key order holds because writes to one aggregate lock its row
        # before the UoW inserts the outbox rows at commit time.
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), nullable=False),
        # The envelope id; NULL for messages that are not our own events (e.g. dead-letter
        # feed copies of another service's message, which may be replayed more than once).
        sa.Column("event_id", sa.Uuid, nullable=True),
        sa.Column("topic", sa.Text, nullable=False),
        # Kafka keys are bytes; ours are aggregate ids, but copies of foreign messages keep
        # whatever key they had.
        sa.Column("key", sa.LargeBinary, nullable=True),
        # NULL once retention scrubbed the row (the payload may hold personal data).
        sa.Column("value", sa.LargeBinary, nullable=True),
        sa.Column("headers", JSONB, nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("scrubbed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name=f"pk_{name}"),
        sa.UniqueConstraint("event_id", name=f"uq_{name}_event_id"),
    ]


def _index_specs(name: str) -> list[tuple[str, list[str], dict[str, Any]]]:
    return [
        # The relay's only hot query: the few unpublished rows, in id order.
        (
            f"ix_{name}_unpublished",
            ["id"],
            {"postgresql_where": sa.text("published_at IS NULL")},
        ),
        # Retention walks published rows by age.
        (f"ix_{name}_published_at", ["published_at"], {}),
    ]


def outbox_table(metadata: sa.MetaData, name: str = DEFAULT_TABLE_NAME) -> sa.Table:
    """Define the outbox table on the service's ``metadata`` and return it."""
    table = sa.Table(name, metadata, *_columns_and_constraints(name))
    for index_name, columns, kw in _index_specs(name):
        sa.Index(index_name, *(table.c[c] for c in columns), **kw)
    return table


def create_outbox_table(op: MigrationOps, name: str = DEFAULT_TABLE_NAME) -> None:
    """Create the outbox table and its indexes (call from a service's first migration)."""
    op.create_table(name, *_columns_and_constraints(name))
    for index_name, columns, kw in _index_specs(name):
        op.create_index(index_name, name, columns, **kw)


def drop_outbox_table(op: MigrationOps, name: str = DEFAULT_TABLE_NAME) -> None:
    """Drop the outbox table (its indexes go with it)."""
    op.drop_table(name)


def _qualified_name(table: sa.Table) -> str:
    return f"{table.schema}.{table.name}" if table.schema else table.name


def notify_channel(table: sa.Table) -> str:
    """Return the LISTEN/NOTIFY channel of ``table``: one per outbox, so no cross-wakes."""
    channel = f"agora_outbox_{_qualified_name(table)}".lower()
    if len(channel.encode()) > _MAX_IDENTIFIER:
        # Postgres would truncate silently; two long names could then share a channel.
        digest = hashlib.sha256(channel.encode()).hexdigest()[:12]
        channel = f"{channel.encode()[: _MAX_IDENTIFIER - 13].decode(errors='ignore')}_{digest}"
    return channel


def advisory_lock_key(table: sa.Table) -> int:
    """Return the ``pg_try_advisory_lock`` key (signed 64-bit) for ``table``'s relay."""
    digest = hashlib.sha256(f"agora.outbox.relay:{_qualified_name(table)}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def encode_headers(headers: Sequence[tuple[str, bytes]]) -> list[StoredHeader]:
    """Turn Kafka headers into JSON: text values stay readable, others become base64."""
    stored: list[StoredHeader] = []
    for name, value in headers:
        try:
            stored.append([name, value.decode("utf-8")])
        except UnicodeDecodeError:
            stored.append([name, {"base64": base64.b64encode(value).decode("ascii")}])
    return stored


def decode_headers(stored: Sequence[StoredHeader] | None) -> list[tuple[str, bytes]]:
    """Turn stored JSON headers back into Kafka headers (inverse of ``encode_headers``)."""
    headers: list[tuple[str, bytes]] = []
    for name, value in stored or ():
        if isinstance(value, dict):
            try:
                headers.append((str(name), base64.b64decode(value["base64"], validate=True)))
            except (KeyError, binascii.Error) as exc:
                raise ValueError(f"malformed stored header {name!r}") from exc
        else:
            headers.append((str(name), str(value).encode("utf-8")))
    return headers


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


async def scrub_published(
    conn: AsyncSession | AsyncConnection,
    table: sa.Table,
    *,
    older_than: timedelta,
    limit: int = 1000,
) -> int:
    """Erase ``value`` and ``headers`` of rows published before ``older_than``; return count."""
    cutoff = sa.func.now() - older_than
    batch = (
        sa.select(table.c.id)
        .where(
            table.c.published_at.is_not(None),
            table.c.published_at < cutoff,
            table.c.scrubbed_at.is_(None),
        )
        .order_by(table.c.id)
        .limit(limit)
        # Bounded batches keep locks short and never wait on a row the relay holds.
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    result = await conn.execute(
        sa.update(table)
        .where(table.c.id.in_(batch))
        .values(value=None, headers=None, scrubbed_at=sa.func.now())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def delete_published(
    conn: AsyncSession | AsyncConnection,
    table: sa.Table,
    *,
    older_than: timedelta,
    limit: int = 1000,
) -> int:
    """Delete rows published before ``older_than`` (in bounded batches); return count."""
    cutoff = sa.func.now() - older_than
    batch = (
        sa.select(table.c.id)
        .where(table.c.published_at.is_not(None), table.c.published_at < cutoff)
        .order_by(table.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    result = await conn.execute(sa.delete(table).where(table.c.id.in_(batch)))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def run_retention(
    conn: AsyncConnection,
    table: sa.Table,
    *,
    retention: timedelta,
    delete_after: timedelta,
    max_batches: int = 20,
    batch: int = 1000,
) -> tuple[int, int]:
    """Scrub, then delete, published rows past their retention; return (scrubbed, deleted)."""
    scrubbed = deleted = 0
    for _ in range(max_batches):
        n = await scrub_published(conn, table, older_than=retention, limit=batch)
        scrubbed += n
        if n < batch:
            break
    for _ in range(max_batches):
        n = await delete_published(conn, table, older_than=delete_after, limit=batch)
        deleted += n
        if n < batch:
            break
    if scrubbed or deleted:
        log.info("relay.retention", table=table.name, scrubbed=scrubbed, deleted=deleted)
    return scrubbed, deleted
