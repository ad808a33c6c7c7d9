"""Two consumer loops in one group share a 3-partition topic; when one stops the other takes over.

Rebalances take about 8 s on the embedded broker, so the deadlines are generous but bounded.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
import pytest_asyncio
import sqlalchemy as sa
from agora_contract import Envelope, UserRegistered
from agora_kit.consumer import (
    ConsumerConfig,
    ConsumerLoop,
    FailurePolicy,
    HandlerContext,
    HandlerTable,
    consumer_tables,
)
from agora_kit.consumer.inbox import claim, inbox_table
from agora_kit.consumer.retry import Backoff
from agora_kit.db import create_engine, create_session_factory, make_metadata
from agora_kit.kafka import create_producer, ensure_topics
from agora_kit.outbox import outbox_table
from agora_kit.settings import ServiceSettings
from agora_kit.testing.poll import eventually
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

REBALANCE_TIMEOUT = 60.0
CONFIG = ConsumerConfig(
    session_timeout_ms=6000,
    heartbeat_interval_ms=500,
    fetch_max_wait_ms=20,
    handler_timeout_s=5.0,
    max_poll_interval_ms=60_000,
    request_timeout_ms=5000,
    monitor_interval_s=0.5,
    stall_timeout_s=30.0,
    retry_poll_interval_s=0.2,
    revoke_grace_s=2.0,
    commit_interval_s=0.2,
    backoff=Backoff(base_s=0.2, max_s=1.0),
    stop_timeout_s=10.0,
)


METADATA = make_metadata()
TABLES = consumer_tables(METADATA, outbox=outbox_table(METADATA))
INBOX = inbox_table(METADATA)
EFFECT = sa.Table(
    "effect",
    METADATA,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("event_id", sa.Uuid, nullable=False),
    sa.Column("loop", sa.Text, nullable=False),
)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def engine(create_database: Callable[[str], str]) -> AsyncIterator[AsyncEngine]:
    """An engine on this module's database with the consumer tables and an effect table."""
    eng = create_engine(ServiceSettings(database_url=create_database("kit_rebalance")))
    async with eng.begin() as conn:
        await conn.run_sync(METADATA.create_all)
    try:
        yield eng
    finally:
        await eng.dispose()


def _handlers(engine: AsyncEngine, name: str, calls: Counter[str]) -> HandlerTable:
    sessions = create_session_factory(engine)
    table = HandlerTable()

    @table.on(UserRegistered)
    async def apply(ctx: HandlerContext, envelope: Envelope, event: UserRegistered) -> None:
        calls[name] += 1
        await asyncio.sleep(0.02)  # keeps records in flight when a partition is revoked
        async with sessions.begin() as session:
            if await claim(session, INBOX, group=ctx.group, event_id=envelope.id):
                await session.execute(sa.insert(EFFECT).values(event_id=envelope.id, loop=name))

    return table


@pytest.mark.asyncio(loop_scope="session")
async def test_two_loops_share_partitions_and_one_takes_over_when_the_other_stops(
    engine: AsyncEngine, kafka_bootstrap: str
) -> None:
    url = engine.url.render_as_string(hide_password=False)
    settings = ServiceSettings(
        database_url=url,
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_enable_idempotence=False,
        kafka_request_timeout_ms=5000,
    )
    suffix = uuid.uuid4().hex[:10]
    topic, group = f"test.rebalance.{suffix}", f"test-rebalance-{suffix}"
    await ensure_topics(settings, [topic], partitions=3)
    calls: Counter[str] = Counter()
    sessions = create_session_factory(engine)

    def make(name: str) -> ConsumerLoop:
        return ConsumerLoop(
            settings=settings,
            group=group,
            topics=[topic],
            handlers=_handlers(engine, name, calls),
            policy=FailurePolicy.INDEPENDENT,
            session_factory=sessions,
            tables=TABLES,
            registry=CollectorRegistry(),
            config=CONFIG,
            client_id=f"rebalance-{name}",
        )

    first, second = make("a"), make("b")
    producer = create_producer(settings, client_id="rebalance-producer")
    await asyncio.wait_for(producer.start(), 10)

    async def publish(user_ids: range) -> list[uuid.UUID]:
        ids = []
        for uid in user_ids:
            event = UserRegistered(
                user_id=uid,
                email=f"u{uid}@example.org",
                name="U",
                registered_at=datetime.now(UTC),
            )
            envelope = Envelope.wrap(event)
            await asyncio.wait_for(
                producer.send_and_wait(
                    topic, envelope.to_bytes(), key=envelope.kafka_key(), partition=uid % 3
                ),
                10,
            )
            ids.append(envelope.id)
        return ids

    async def effects() -> list[tuple[uuid.UUID, str]]:
        async with engine.connect() as conn:
            rows = await conn.execute(sa.select(EFFECT.c.event_id, EFFECT.c.loop))
            return [(row.event_id, row.loop) for row in rows]

    try:
        await first.start()
        await second.start()

        async def shared() -> bool:
            a, b = first.assignment, second.assignment
            return bool(a) and bool(b) and not (a & b) and len(a | b) == 3

        await eventually(shared, timeout_s=REBALANCE_TIMEOUT)
        events = await publish(range(1, 61))

        async def first_busy() -> bool:
            return calls["a"] >= 5

        await eventually(first_busy, timeout_s=REBALANCE_TIMEOUT)
        await first.stop()  # mid-stream: in-flight records finish and are committed

        async def took_over() -> bool:
            return len(second.assignment) == 3

        await eventually(took_over, timeout_s=REBALANCE_TIMEOUT)
        events += await publish(range(61, 76))

        async def all_applied() -> bool:
            return len(await effects()) >= len(events)

        await eventually(all_applied, timeout_s=REBALANCE_TIMEOUT)
        rows = await effects()
        per_event = Counter(event_id for event_id, _ in rows)
        assert sorted(per_event) == sorted(events)
        assert set(per_event.values()) == {1}  # every event changed the database once
        by_loop = Counter(name for _, name in rows)
        assert by_loop["a"] >= 5
        assert by_loop["b"] >= 15  # at least everything after the takeover
        assert second.is_alive()

        async def committed() -> bool:
            return [entry.lag for entry in await second.lag()] == [0, 0, 0]

        await eventually(committed, timeout_s=15)
    finally:
        await first.stop()
        await second.stop()
        await asyncio.wait_for(producer.stop(), 10)
