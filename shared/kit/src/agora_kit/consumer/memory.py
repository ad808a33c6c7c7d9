"""An in-memory driver for the consumer side: the consumer's own dispatcher, no broker.

In the spirit of FastStream's ``TestKafkaBroker``: an envelope becomes the record the broker
would deliver (the bytes, key and headers the relay publishes), and goes to the same
:class:`~agora_kit.consumer.dispatch.Dispatcher` the consumer loop uses: decoding, the
handler table, the failure policy, the retry store and the dead letters, in the real
database. :meth:`MemoryConsumer.run_retries` makes the waiting retries due and runs them at
once, so a retry schedule of minutes is tested in milliseconds.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from agora_contract import Envelope, Event
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agora_kit.consumer import retry
from agora_kit.consumer.config import ConsumerConfig, FailurePolicy
from agora_kit.consumer.dispatch import Dispatcher
from agora_kit.consumer.handlers import Handler
from agora_kit.consumer.metrics import ConsumerMetrics
from agora_kit.consumer.retry import Record
from agora_kit.consumer.tables import ConsumerTables


class _Partition:
    """The partition side the dispatcher talks to: never revoked, nothing to commit."""

    def __init__(self) -> None:
        self._stopping = asyncio.Event()

    @property
    def stopping(self) -> asyncio.Event:
        return self._stopping

    async def before_wait(self) -> None:
        return None

    def heartbeat(self) -> None:
        return None


class MemoryConsumer:
    """Feeds envelopes to a consumer group's handlers as the consumer loop would."""

    def __init__(
        self,
        *,
        group: str,
        handlers: Mapping[str, Handler],
        session_factory: async_sessionmaker[AsyncSession],
        tables: ConsumerTables,
        policy: FailurePolicy = FailurePolicy.INDEPENDENT,
        config: ConsumerConfig | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._offsets = itertools.count()
        self.dispatcher = Dispatcher(
            group=group,
            handlers=handlers,
            policy=policy,
            config=config or ConsumerConfig(),
            session_factory=session_factory,
            tables=tables,
            metrics=ConsumerMetrics.for_registry(CollectorRegistry()),
        )

    def record(self, envelope: Envelope, *, topic: str) -> Record:
        """The record the broker would deliver for ``envelope`` (as the relay publishes it)."""
        return Record(
            topic=topic,
            partition=0,
            offset=next(self._offsets),
            key=envelope.kafka_key(),
            value=envelope.to_bytes(),
            headers=tuple(envelope.kafka_headers()),
        )

    async def send(self, event: Event, **envelope: Any) -> Envelope:
        """Wrap ``event`` (``Envelope.wrap`` keywords), deliver it once and return its envelope."""
        wrapped = Envelope.wrap(event, **envelope)
        await self.send_envelope(wrapped, topic=event.topic)
        return wrapped

    async def send_envelope(self, envelope: Envelope, *, topic: str) -> None:
        """Deliver ``envelope`` once, as it came from ``topic`` (a redelivery, a replay)."""
        await self.send_record(self.record(envelope, topic=topic))

    async def send_record(self, record: Record) -> None:
        """Deliver a raw record (a poison message, a foreign producer's bytes)."""
        committed = await self.dispatcher.handle(record, _Partition())
        if not committed:  # only a revoked partition leaves a record uncommitted
            raise RuntimeError(f"record {record.offset} was not settled")

    async def waiting_retries(self) -> int:
        """How many of the group's events wait in the retry store."""
        async with self._session_factory() as session:
            return await retry.count_waiting(
                session, self.dispatcher.tables.retry, group=self.dispatcher.group
            )

    async def run_retries(self, *, rounds: int = 1) -> int:
        """Make every waiting retry due now and run it, ``rounds`` times; return attempts made."""
        table = self.dispatcher.tables.retry
        made = 0
        for _ in range(rounds):
            async with self._session_factory.begin() as session:
                await session.execute(
                    sa.update(table)
                    .where(table.c.consumer_group == self.dispatcher.group)
                    .values(next_attempt_at=sa.func.now())
                )
                rows = await retry.claim_due(
                    session,
                    table,
                    group=self.dispatcher.group,
                    limit=10_000,
                    lease_s=self.dispatcher.config.retry_lease_s,
                )
            for row in rows:
                await self.dispatcher.handle_retry(row)
            made += len(rows)
            if not rows:
                break
        return made
