"""The tables a consumer loop writes, defined on the service's MetaData, and their migrations."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from agora_kit._tables import MigrationOps
from agora_kit.consumer import retry
from agora_kit.consumer.deadletter_table import (
    create_dead_letter_table,
    dead_letter_table,
    drop_dead_letter_table,
)


@dataclass(frozen=True, slots=True)
class ConsumerTables:
    """The tables a consumer loop writes (all on the service's MetaData)."""

    dead_letter: sa.Table
    retry: sa.Table
    outbox: sa.Table


def consumer_tables(metadata: sa.MetaData, *, outbox: sa.Table) -> ConsumerTables:
    """Define the dead-letter and retry tables on ``metadata``; ``outbox`` carries the feed."""
    return ConsumerTables(
        dead_letter=dead_letter_table(metadata), retry=retry.retry_table(metadata), outbox=outbox
    )


def create_consumer_tables(op: MigrationOps) -> None:
    """Create the dead-letter and retry tables (from a service's first migration)."""
    create_dead_letter_table(op)
    retry.create_retry_table(op)


def drop_consumer_tables(op: MigrationOps) -> None:
    """Drop the dead-letter and retry tables."""
    retry.drop_retry_table(op)
    drop_dead_letter_table(op)
