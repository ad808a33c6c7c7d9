"""The outbox table: its columns and indexes, headers as stored, the relay's channel and lock."""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.schema import SchemaItem

from agora_kit._tables import MigrationOps

log = logging.getLogger(__name__)

#: The default outbox table name (one per service database).
DEFAULT_TABLE_NAME = "outbox"

#: Postgres truncates identifiers (and so channel names) to 63 bytes.
_MAX_IDENTIFIER = 63


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
