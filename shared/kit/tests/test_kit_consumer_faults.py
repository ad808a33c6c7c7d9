"""The consumer loop rides out a frozen broker: alive throughout, every event applied once.

The freeze outlasts the session timeout, so on thaw the group may have expired us: commits
fail with ``CommitFailedError``, the loop rejoins, and redelivered events are deduplicated.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
import pytest_asyncio
import sqlalchemy as sa
from agora_contract import Envelope, UserRegistered
from agora_deploy.launchers.kafka import Broker
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

METADATA = make_metadata()
TABLES = consumer_tables(METADATA, outbox=outbox_table(METADATA))
INBOX = inbox_table(METADATA)
EFFECT = sa.Table(
    "effect",
    METADATA,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("event_id", sa.Uuid, nullable=False),
)
FREEZE_S = 8.0


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def engine(create_database: Callable[[str], str]) -> AsyncIterator[AsyncEngine]:
    """An engine on this module's database with the consumer tables and an effect table."""
    eng = create_engine(ServiceSettings(database_url=create_database("kit_consumer_faults")))
    async with eng.begin() as conn:
        await conn.run_sync(METADATA.create_all)
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest.mark.asyncio(loop_scope="session")
async def test_a_frozen_broker_is_ridden_out_and_nothing_is_applied_twice(
    engine: AsyncEngine, kafka_broker: Broker
) -> None:
    settings = ServiceSettings(
        database_url=engine.url.render_as_string(hide_password=False),
        kafka_bootstrap_servers=kafka_broker.bootstrap,
        kafka_enable_idempotence=False,
        kafka_request_timeout_ms=3000,
    )
    suffix = uuid.uuid4().hex[:10]
    topic, group = f"test.faults.{suffix}", f"test-faults-{suffix}"
    await ensure_topics(settings, [topic], partitions=3)
    sessions = create_session_factory(engine)
    handlers = HandlerTable()

    @handlers.on(UserRegistered)
    async def apply(ctx: HandlerContext, envelope: Envelope, event: UserRegistered) -> None:
        async with sessions.begin() as session:
            if await claim(session, INBOX, group=ctx.group, event_id=envelope.id):
                await session.execute(sa.insert(EFFECT).values(event_id=envelope.id))

    loop = ConsumerLoop(
        settings=settings,
        group=group,
        topics=[topic],
        handlers=handlers,
        policy=FailurePolicy.INDEPENDENT,
        session_factory=sessions,
        tables=TABLES,
        registry=CollectorRegistry(),
        config=ConsumerConfig(
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
            fetch_max_wait_ms=20,
            handler_timeout_s=5.0,
            max_poll_interval_ms=60_000,
            request_timeout_ms=3000,
            monitor_interval_s=0.5,
            stall_timeout_s=20.0,
            revoke_grace_s=2.0,
            commit_interval_s=0.2,
            restart_backoff=Backoff(base_s=0.5, max_s=2.0),
            stop_timeout_s=10.0,
        ),
        client_id="faults-test",
    )
    producer = create_producer(settings, client_id="faults-producer")
    await asyncio.wait_for(producer.start(), 10)
    sent: list[uuid.UUID] = []

    async def publish(user_ids: range) -> None:
        for uid in user_ids:
            event = UserRegistered(
                user_id=uid, email=f"f{uid}@example.org", name="F", registered_at=datetime.now(UTC)
            )
            envelope = Envelope.wrap(event)
            await asyncio.wait_for(
                producer.send_and_wait(topic, envelope.to_bytes(), key=envelope.kafka_key()), 10
            )
            sent.append(envelope.id)

    async def applied() -> list[uuid.UUID]:
        async with engine.connect() as conn:
            return list((await conn.execute(sa.select(EFFECT.c.event_id))).scalars())

    async def all_applied() -> bool:
        return len(await applied()) >= len(sent)

    frozen = False
    try:
        await loop.start()
        await publish(range(1, 11))
        await eventually(all_applied, timeout_s=40)

        kafka_broker.freeze()
        frozen = True
        until = time.monotonic() + FREEZE_S
        while time.monotonic() < until:
            assert loop.is_alive(), "a broker outage is not a wedged consumer"
            await asyncio.sleep(0.25)
        kafka_broker.thaw()
        frozen = False

        await publish(range(11, 21))
        await eventually(all_applied, timeout_s=60)
        rows = await applied()
        assert sorted(rows) == sorted(sent)  # each exactly once
        assert loop.is_alive()
    finally:
        if frozen:
            kafka_broker.thaw()
        await loop.stop()
        await asyncio.wait_for(producer.stop(), 10)
