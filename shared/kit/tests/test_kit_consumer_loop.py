"""The consumer loop against real Postgres and the embedded broker.

Each test uses its own topic and group; one group join per test where possible (joins take
about 5 s on the embedded broker). Effects are rows in an ``effect`` table written with the
inbox claim in one transaction, so "changed the database once" is a row count.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from agora_contract import Envelope, Event, ItemDeleted, UserRegistered
from agora_kit.consumer import (
    ConsumerConfig,
    ConsumerLoop,
    ConsumerTables,
    FailurePolicy,
    HandlerContext,
    HandlerTable,
    PermanentError,
    TransientError,
    consumer_tables,
    fetch_group_lag,
)
from agora_kit.consumer.deadletter_table import DeadLetterStatus
from agora_kit.consumer.deadletters import DeadLetterNotPending, DeadLetterStore
from agora_kit.consumer.inbox import claim, inbox_table
from agora_kit.consumer.retry import Backoff
from agora_kit.db import create_engine, create_session_factory, make_metadata
from agora_kit.kafka import create_producer, ensure_topics
from agora_kit.outbox import outbox_table
from agora_kit.outbox.relay import OutboxRelay
from agora_kit.outbox.relay_config import RelayConfig
from agora_kit.settings import ServiceSettings
from agora_kit.testing.poll import eventually
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

FAST = ConsumerConfig(
    session_timeout_ms=6000,
    heartbeat_interval_ms=500,
    fetch_max_wait_ms=20,
    handler_timeout_s=5.0,
    max_poll_interval_ms=60_000,
    request_timeout_ms=5000,
    monitor_interval_s=0.3,
    stall_timeout_s=3.0,
    retry_poll_interval_s=0.1,
    revoke_grace_s=2.0,
    commit_interval_s=0.2,
    max_attempts=3,
    permanent_attempts=2,
    backoff=Backoff(base_s=0.3, max_s=1.0, jitter=0.0),
    db_backoff=Backoff(base_s=0.1, max_s=0.5),
    restart_backoff=Backoff(base_s=0.5, max_s=2.0),
    stop_timeout_s=10.0,
)
JOIN_TIMEOUT = 40.0


@dataclass
class Db:
    """This module's database: consumer tables, inbox, outbox and an effect table."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    tables: ConsumerTables
    inbox: sa.Table
    effect: sa.Table
    url: str


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def db(create_database: Callable[[str], str]) -> AsyncIterator[Db]:
    """A database with every table the consumer kit needs."""
    url = create_database("kit_consumer")
    engine = create_engine(ServiceSettings(database_url=url))
    metadata = make_metadata()
    tables = consumer_tables(metadata, outbox=outbox_table(metadata))
    inbox = inbox_table(metadata)
    effect = sa.Table(
        "effect",
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("consumer_group", sa.Text, nullable=False),
        sa.Column("event_id", sa.Uuid, nullable=False),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
    )
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        yield Db(engine, create_session_factory(engine), tables, inbox, effect, url)
    finally:
        await engine.dispose()


@dataclass
class Harness:
    """One test's topic, group, producer and the loops and relays it started."""

    db: Db
    settings: ServiceSettings
    topic: str
    group: str
    producer: AIOKafkaProducer
    components: list[Any] = field(default_factory=list)

    def loop(
        self,
        handlers: HandlerTable,
        *,
        policy: FailurePolicy = FailurePolicy.INDEPENDENT,
        registry: CollectorRegistry | None = None,
        **overrides: Any,
    ) -> ConsumerLoop:
        """Build a consumer loop (stopped by the fixture whatever happens)."""
        config = ConsumerConfig(**{**_fields(FAST), **overrides}) if overrides else FAST
        loop = ConsumerLoop(
            settings=self.settings,
            group=self.group,
            topics=[self.topic],
            handlers=handlers,
            policy=policy,
            session_factory=self.db.sessions,
            tables=self.db.tables,
            registry=registry or CollectorRegistry(),
            config=config,
            client_id=f"test-{uuid.uuid4().hex[:6]}",
        )
        self.components.append(loop)
        return loop

    def relay(self) -> OutboxRelay:
        """Build the outbox relay that publishes the dead-letter feed."""
        relay = OutboxRelay(
            engine=self.db.engine,
            outbox=self.db.tables.outbox,
            producer_factory=lambda: create_producer(self.settings, client_id="test-relay"),
            registry=CollectorRegistry(),
            config=RelayConfig(poll_interval_s=0.2, stop_timeout_s=5.0),
        )
        self.components.append(relay)
        return relay

    async def send(
        self, value: bytes, *, key: bytes | None = None, partition: int | None = None
    ) -> None:
        """Publish one raw message to the test topic."""
        await asyncio.wait_for(
            self.producer.send_and_wait(self.topic, value, key=key, partition=partition), 10
        )

    async def send_event(self, event: Event, *, partition: int | None = None) -> Envelope:
        """Publish ``event`` in an envelope, keyed by its subject; return the envelope."""
        envelope = Envelope.wrap(event)
        await asyncio.wait_for(
            self.producer.send_and_wait(
                self.topic,
                envelope.to_bytes(),
                key=envelope.kafka_key(),
                headers=envelope.kafka_headers(),
                partition=partition,
            ),
            10,
        )
        return envelope

    async def effects(self) -> list[Any]:
        """Every effect row of this test's group, in the order they were applied."""
        t = self.db.effect
        async with self.db.sessions() as session:
            query = sa.select(t).where(t.c.consumer_group == self.group).order_by(t.c.id)
            return list((await session.execute(query)).all())

    async def dead_letters(self) -> list[Any]:
        """Every dead-letter row of this test's group, oldest first."""
        t = self.db.tables.dead_letter
        async with self.db.sessions() as session:
            query = sa.select(t).where(t.c.consumer_group == self.group).order_by(t.c.id)
            return list((await session.execute(query)).all())

    async def waiting_retries(self) -> int:
        """Rows of this group in the retry store."""
        t = self.db.tables.retry
        async with self.db.sessions() as session:
            query = sa.select(sa.func.count()).where(t.c.consumer_group == self.group)
            return int((await session.execute(query)).scalar_one())


def _fields(config: ConsumerConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


@pytest_asyncio.fixture(loop_scope="session")
async def harness(db: Db, kafka_bootstrap: str) -> AsyncIterator[Harness]:
    """A fresh topic (3 partitions) and group; stops every component it started."""
    settings = ServiceSettings(
        database_url=db.url,
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_enable_idempotence=False,
        kafka_request_timeout_ms=5000,
        service_name="kit-consumer-test",
    )
    suffix = uuid.uuid4().hex[:10]
    topic, group = f"test.consumer.{suffix}", f"test-group-{suffix}"
    await ensure_topics(settings, [topic], partitions=3)
    producer = create_producer(settings, client_id="test-producer")
    await asyncio.wait_for(producer.start(), 10)
    h = Harness(db, settings, topic, group, producer)
    try:
        yield h
    finally:
        await asyncio.gather(*(c.stop() for c in h.components))
        await asyncio.wait_for(producer.stop(), 10)


def registered(user_id: int) -> UserRegistered:
    """A valid ``UserRegistered`` for ``user_id``."""
    return UserRegistered(
        user_id=user_id,
        email=f"user{user_id}@example.org",
        name=f"User {user_id}",
        registered_at=datetime.now(UTC),
    )


def effect_handlers(
    db: Db,
    *,
    before: Callable[[HandlerContext, UserRegistered], Awaitable[None]] | None = None,
) -> HandlerTable:
    """Handlers that apply ``UserRegistered`` once per event id (inbox + effect row)."""
    table = HandlerTable()

    @table.on(UserRegistered)
    async def apply(ctx: HandlerContext, envelope: Envelope, event: UserRegistered) -> None:
        if before is not None:
            await before(ctx, event)
        async with db.sessions.begin() as session:
            if not await claim(session, db.inbox, group=ctx.group, event_id=envelope.id):
                return
            await session.execute(
                sa.insert(db.effect).values(
                    consumer_group=ctx.group,
                    event_id=envelope.id,
                    user_id=event.user_id,
                    partition=ctx.partition,
                    attempt=ctx.attempt,
                )
            )

    return table


async def read_topic(bootstrap: str, topic: str, expected: int) -> list[Any]:
    """Read ``expected`` records from every partition of ``topic`` (no group)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await asyncio.wait_for(consumer.start(), 10)
    try:
        partitions = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(partitions)
        records: list[Any] = []
        deadline = time.monotonic() + 20
        while len(records) < expected:
            assert time.monotonic() < deadline, f"only {len(records)} of {expected} on {topic}"
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
        return records
    finally:
        await asyncio.wait_for(consumer.stop(), 10)


def metric(registry: CollectorRegistry, name: str, labels: dict[str, str]) -> float:
    """Return a sample's value (0 when absent)."""
    return registry.get_sample_value(name, labels) or 0.0


@pytest.mark.asyncio(loop_scope="session")
async def test_redelivery_applies_once_and_poison_becomes_dead_letter(harness: Harness) -> None:
    registry = CollectorRegistry()
    loop = harness.loop(effect_handlers(harness.db), registry=registry)
    await harness.relay().start()
    await loop.start()

    first = await harness.send_event(registered(1), partition=0)
    # The same envelope again, as a redelivery after a crash before the commit would be.
    await harness.send(first.to_bytes(), key=b"1", partition=0)
    poison = [
        b"{not json",
        json.dumps(first.to_dict() | {"id": str(uuid.uuid4()), "type": "agora.x.y.z.v1"}).encode(),
        json.dumps(
            first.to_dict() | {"id": str(uuid.uuid4()), "data": {"user_id": "seven"}}
        ).encode(),
    ]
    for value in poison:
        await harness.send(value, key=b"p", partition=0)
    # A known type this consumer does not handle: skipped, not a dead letter.
    await harness.send_event(
        ItemDeleted(item_id=5, owner_id=1, reason="owner_request"), partition=0
    )
    second = await harness.send_event(registered(2), partition=0)

    async def all_done() -> bool:
        return len(await harness.effects()) == 2 and len(await harness.dead_letters()) == 3

    await eventually(all_done, timeout_s=JOIN_TIMEOUT)
    effects = await harness.effects()
    assert [(e.event_id, e.user_id) for e in effects] == [(first.id, 1), (second.id, 2)]

    letters = await harness.dead_letters()
    assert [d.error_kind for d in letters] == ["malformed", "unknown_type", "invalid"]
    assert [d.value for d in letters] == poison
    assert [d.offset for d in letters] == [2, 3, 4]
    assert all(d.status == "pending" and d.key == b"p" for d in letters)
    assert letters[1].event_type == "agora.x.y.z.v1"
    assert letters[2].error.startswith("invalid data for agora.users.user.registered.v1")

    # The feed: the original value, key and headers plus ours, on <group>.dead-letter.
    feed = await read_topic(
        harness.settings.kafka_bootstrap_servers, f"{harness.group}.dead-letter", 3
    )
    assert sorted(r.value for r in feed) == sorted(poison)
    for record in feed:
        headers = dict(record.headers)
        assert record.key == b"p"
        assert headers["x-agora-original-topic"] == harness.topic.encode()
        assert headers["x-agora-original-partition"] == b"0"
        assert int(headers["x-agora-original-offset"]) in {2, 3, 4}
        assert headers["x-agora-error"]

    # Every offset is committed: no lag, seen from the loop and from outside the group.
    async def caught_up() -> bool:
        lags = {(e.partition, e.position, e.lag) for e in await loop.lag()}
        return (0, 7, 0) in lags and all(lag == 0 for _, _, lag in lags)

    await eventually(caught_up, timeout_s=10)
    outside = await fetch_group_lag(
        harness.settings.kafka_bootstrap_servers, harness.group, [harness.topic]
    )
    assert {(e.partition, e.position, e.lag) for e in outside if e.partition == 0} == {(0, 7, 0)}

    labels = {"group": harness.group}
    assert metric(registry, "agora_consumer_dead_letters_total", labels | {"kind": "invalid"}) == 1
    ok = labels | {"type": UserRegistered.event_type, "outcome": "ok"}
    assert metric(registry, "agora_consumer_processed_total", ok) == 3  # one was a no-op
    skipped = labels | {"type": ItemDeleted.event_type, "outcome": "skipped"}
    assert metric(registry, "agora_consumer_processed_total", skipped) == 1
    assert loop.is_alive()


@pytest.mark.asyncio(loop_scope="session")
async def test_independent_retries_without_blocking_then_dead_letters_and_replays(
    harness: Harness,
) -> None:
    # user 10 fails twice, then works; 11 and 12 work; 13 always fails; 14 is permanent
    # until replayed.
    attempts: dict[int, list[int]] = {}

    async def before(ctx: HandlerContext, event: UserRegistered) -> None:
        attempts.setdefault(event.user_id, []).append(ctx.attempt)
        if event.user_id == 10 and ctx.attempt < 3:
            raise TransientError("smtp 451")
        if event.user_id == 13:
            raise RuntimeError("still down")
        if event.user_id == 14 and not ctx.replayed:
            raise PermanentError("smtp 550")

    loop = harness.loop(effect_handlers(harness.db, before=before))
    await loop.start()
    envelopes = {
        uid: await harness.send_event(registered(uid), partition=1) for uid in range(10, 15)
    }

    async def settled() -> bool:
        users = [e.user_id for e in await harness.effects()]
        letters = await harness.dead_letters()
        return 10 in users and len(letters) == 2 and await harness.waiting_retries() == 0

    await eventually(settled, timeout_s=JOIN_TIMEOUT)
    effects = await harness.effects()
    # The events behind the failing one were handled first; it succeeded on attempt 3.
    assert [e.user_id for e in effects] == [11, 12, 10]
    assert effects[-1].attempt == 3
    assert attempts[10] == [1, 2, 3]
    assert attempts[13] == [1, 2, 3]
    assert attempts[14] == [1]
    letters = {d.event_id: d for d in await harness.dead_letters()}
    exhausted, permanent = letters[envelopes[13].id], letters[envelopes[14].id]
    assert (exhausted.error_kind, exhausted.attempts) == ("exhausted", 3)
    assert exhausted.error == "RuntimeError: still down"
    assert exhausted.first_failed_at < exhausted.last_failed_at
    assert (permanent.error_kind, permanent.attempts) == ("permanent", 1)
    assert permanent.error == "PermanentError: smtp 550"

    # Replay: handled again through the retry path, applied once, and only once.
    store = DeadLetterStore(
        harness.db.sessions,
        table=harness.db.tables.dead_letter,
        retry_table=harness.db.tables.retry,
    )
    replayed = await store.replay(permanent.id)
    assert replayed.status is DeadLetterStatus.REPLAYED
    assert replayed.replayed_at is not None

    async def applied() -> bool:
        return 14 in [e.user_id for e in await harness.effects()]

    await eventually(applied, timeout_s=10)
    with pytest.raises(DeadLetterNotPending):
        await store.replay(permanent.id)
    await eventually(lambda: _zero(harness.waiting_retries), timeout_s=10)
    assert [e.user_id for e in await harness.effects()].count(14) == 1
    assert attempts[14] == [1, 1]  # replays start their attempts afresh
    assert loop.is_alive()


async def _zero(count: Callable[[], Awaitable[int]]) -> bool:
    return await count() == 0


@pytest.mark.asyncio(loop_scope="session")
async def test_in_order_retries_in_place_while_other_partitions_flow(harness: Harness) -> None:
    # Partition 0: 20 fails twice (transient), 21 and 22 follow; 23 is permanent (dead
    # letter after 2 attempts), 24 follows it. Partition 1: 30, 31 flow meanwhile.
    attempts: dict[int, list[int]] = {}
    release_30 = asyncio.Event()

    async def before(ctx: HandlerContext, event: UserRegistered) -> None:
        attempts.setdefault(event.user_id, []).append(ctx.attempt)
        if event.user_id == 20 and ctx.attempt < 3:
            raise TransientError("projection store busy")
        if event.user_id == 23:
            raise PermanentError("breaks an invariant")
        if event.user_id == 30:
            release_30.set()

    # A tiny buffer: partition 0 is paused while it retries, and resumed as it catches up.
    loop = harness.loop(
        effect_handlers(harness.db, before=before), policy=FailurePolicy.IN_ORDER, max_buffered=2
    )
    await loop.start()
    envelopes: dict[int, Envelope] = {}
    for uid in (20, 21, 22, 23, 24):
        envelopes[uid] = await harness.send_event(registered(uid), partition=0)
    for uid in (30, 31):
        envelopes[uid] = await harness.send_event(registered(uid), partition=1)

    async def settled() -> bool:
        return len(await harness.effects()) == 6 and len(await harness.dead_letters()) == 1

    await eventually(settled, timeout_s=JOIN_TIMEOUT)
    effects = await harness.effects()
    by_partition: dict[int, list[int]] = {}
    for e in effects:
        by_partition.setdefault(e.partition, []).append(e.user_id)
    assert by_partition == {0: [20, 21, 22, 24], 1: [30, 31]}
    # Partition 1 did not wait for partition 0's retries.
    order = [e.user_id for e in effects]
    assert order.index(31) < order.index(20)
    assert attempts[20] == [1, 2, 3]
    assert attempts[23] == [1, 2]
    (letter,) = await harness.dead_letters()
    assert (letter.event_id, letter.error_kind, letter.attempts) == (
        envelopes[23].id,
        "permanent",
        2,
    )
    assert await harness.waiting_retries() == 0
    assert release_30.is_set()


@pytest.mark.asyncio(loop_scope="session")
async def test_stall_detector_flips_is_alive_and_recovers(harness: Harness) -> None:
    gate = asyncio.Event()

    async def before(ctx: HandlerContext, event: UserRegistered) -> None:
        await gate.wait()  # wedged until the test opens the gate

    loop = harness.loop(
        effect_handlers(harness.db, before=before),
        policy=FailurePolicy.IN_ORDER,
        handler_timeout_s=50.0,
        stall_timeout_s=1.5,
    )
    await loop.start()
    await harness.send_event(registered(40), partition=2)
    await harness.send_event(registered(41), partition=2)

    async def stalled() -> bool:
        return not loop.is_alive()

    await eventually(stalled, timeout_s=JOIN_TIMEOUT)
    assert {tp.partition for tp in loop.assignment} == {0, 1, 2}
    gate.set()

    async def recovered() -> bool:
        return len(await harness.effects()) == 2 and loop.is_alive()

    await eventually(recovered, timeout_s=15)
