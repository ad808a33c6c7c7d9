"""Published outbox rows: secret fields scrubbed at once, the rest scrubbed, then deleted,
after the retention period."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from agora_contract.secrets import is_secret_name
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

log = logging.getLogger(__name__)

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


def _published_batch(
    table: sa.Table, older_than: timedelta, limit: int, *more: sa.ColumnElement[bool]
) -> sa.ScalarSelect[Any]:
    """The ids of up to ``limit`` rows published before ``older_than`` (and ``more``)."""
    cutoff = sa.func.now() - older_than
    return (
        sa.select(table.c.id)
        .where(table.c.published_at.is_not(None), table.c.published_at < cutoff, *more)
        .order_by(table.c.id)
        .limit(limit)
        # Bounded batches keep locks short and never wait on a row the relay holds.
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )


async def scrub_published(
    conn: AsyncSession | AsyncConnection,
    table: sa.Table,
    *,
    older_than: timedelta,
    limit: int = 1000,
) -> int:
    """Erase ``value`` and ``headers`` of rows published before ``older_than``; return count."""
    batch = _published_batch(table, older_than, limit, table.c.scrubbed_at.is_(None))
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
    batch = _published_batch(table, older_than, limit)
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
        log.info(
            "relay.retention", extra={"table": table.name, "scrubbed": scrubbed, "deleted": deleted}
        )
    return scrubbed, deleted
