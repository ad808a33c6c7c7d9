"""The dead-letter table: columns and indexes, for a service's MetaData and its migrations."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.schema import SchemaItem

from agora_kit._tables import MigrationOps
from agora_kit.consumer.retry import record_columns

DEAD_LETTER_TABLE_NAME = "dead_letter"


class ErrorKind(StrEnum):
    """Why a message became a dead letter."""

    MALFORMED = "malformed"  # not a CloudEvents envelope (bad JSON, missing attributes)
    UNKNOWN_TYPE = "unknown_type"  # a ``type`` this contract version does not know
    INVALID = "invalid"  # ``data`` fails its event's schema
    PERMANENT = "permanent"  # the handler raised PermanentError
    EXHAUSTED = "exhausted"  # transient failures until the last attempt


class DeadLetterStatus(StrEnum):
    """Where a dead letter is in its life."""

    PENDING = "pending"
    REPLAYED = "replayed"
    DISCARDED = "discarded"


def _columns_and_constraints(name: str) -> list[SchemaItem]:
    kinds = ", ".join(f"'{k.value}'" for k in ErrorKind)
    statuses = ", ".join(f"'{s.value}'" for s in DeadLetterStatus)
    return [
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), nullable=False),
        *record_columns(),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("error_kind", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default=DeadLetterStatus.PENDING),
        sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("discarded_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=f"pk_{name}"),
        sa.CheckConstraint(f"error_kind IN ({kinds})", name=f"ck_{name}_error_kind"),
        sa.CheckConstraint(f"status IN ({statuses})", name=f"ck_{name}_status"),
    ]


def _index_specs(name: str) -> list[tuple[str, list[str], dict[str, Any]]]:
    return [
        # The admin listing: one group's letters by status, newest first.
        (f"ix_{name}_listing", ["consumer_group", "status", "id"], {}),
        # A poison message redelivered before its offset was committed is stored once;
        # after a replay it may fail again and become a new pending letter.
        (
            f"uq_{name}_pending_position",
            ["consumer_group", "topic", "partition", "offset"],
            {"unique": True, "postgresql_where": sa.text("status = 'pending'")},
        ),
    ]


def dead_letter_table(metadata: sa.MetaData, name: str = DEAD_LETTER_TABLE_NAME) -> sa.Table:
    """Define the dead-letter table on the service's ``metadata`` and return it."""
    table = sa.Table(name, metadata, *_columns_and_constraints(name))
    for index_name, columns, kw in _index_specs(name):
        sa.Index(index_name, *(table.c[c] for c in columns), **kw)
    return table


def create_dead_letter_table(op: MigrationOps, name: str = DEAD_LETTER_TABLE_NAME) -> None:
    """Create the dead-letter table and its indexes (from a service's first migration)."""
    op.create_table(name, *_columns_and_constraints(name))
    for index_name, columns, kw in _index_specs(name):
        op.create_index(index_name, name, columns, **kw)


def drop_dead_letter_table(op: MigrationOps, name: str = DEAD_LETTER_TABLE_NAME) -> None:
    """Drop the dead-letter table."""
    op.drop_table(name)
