"""The outbox relay against real Postgres and the embedded broker.

Each test builds a small service-like setup: a unique outbox table (own lock, own NOTIFY
channel), a unit of work over it, and a unique topic created with ``ensure_topics``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

import pytest
import pytest_asyncio
import sqlalchemy as sa
from agora_contract import Envelope, Event
from agora_deploy.launchers.kafka import Broker
from agora_kit.db import create_engine, create_session_factory, make_metadata
from agora_kit.kafka import create_producer, ensure_topics
from agora_kit.outbox import outbox_table
from agora_kit.outbox.relay import OutboxRelay
from agora_kit.outbox.relay_config import RelayConfig
from agora_kit.settings import ServiceSettings
from agora_kit.testing.poll import eventually
from agora_kit.uow import UnitOfWork
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, OutOfOrderSequenceNumber, RequestTimedOutError
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

PARTITIONS = 3
FAST = RelayConfig(
    poll_interval_s=0.2,
    standby_interval_s=0.2,
    send_timeout_s=3.0,
    ack_timeout_s=8.0,
    producer_start_timeout_s=5.0,
    backoff_initial_s=0.05,
    backoff_max_s=0.5,
    stop_timeout_s=5.0,
)


@dataclass
class Service:
    """A service-like setup: its settings, outbox, unit of work and topic."""

    settings: ServiceSettings
    engine: AsyncEngine
    table: sa.Table
    topic: str
    event: type[Event]
    relays: list[OutboxRelay]

    def uow(self) -> UnitOfWork:
        """Return a new unit of work over this service's outbox."""
        return UnitOfWork(create_session_factory(self.engine), outbox=self.table)

    def relay(
        self,
        producer_factory: Callable[[], AIOKafkaProducer] | None = None,
        registry: CollectorRegistry | None = None,
        **config: Any,
    ) -> OutboxRelay:
        """Build a relay (stopped by the fixture whatever happens)."""
        factory = producer_factory or (lambda: create_producer(self.settings, client_id="test"))
        cfg = RelayConfig(**{**FAST.__dict__, **config}) if config else FAST
        relay = OutboxRelay(
            engine=self.engine,
            outbox=self.table,
            producer_factory=factory,
            registry=registry or CollectorRegistry(),
            config=cfg,
        )
        self.relays.append(relay)
        return relay

    async def write(self, key: int, version: int) -> Envelope:
        """Commit one event for aggregate ``key`` (at ``version``) through the unit of work."""
        async with self.uow() as uow:
            event = self.event.model_validate({"thing_id": key})
            envelope = uow.add_event(event, aggregateversion=version)
            await uow.commit()
        return envelope

    async def pending(self) -> int:
        """Count unpublished rows."""
        async with self.engine.connect() as conn:
            query = sa.select(sa.func.count()).where(self.table.c.published_at.is_(None))
            return int((await conn.execute(query)).scalar_one())

    async def consume_all(self) -> list[ConsumerRecord[bytes, bytes]]:
        """Read every record on the topic (no group: nothing to join), in partition order."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            request_timeout_ms=5000,
        )
        await asyncio.wait_for(consumer.start(), 10)
        try:
            partitions = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
            consumer.assign(partitions)
            ends = await asyncio.wait_for(consumer.end_offsets(partitions), 10)
            records: list[ConsumerRecord[bytes, bytes]] = []
            deadline = time.monotonic() + 15
            while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                assert time.monotonic() < deadline, "topic not read to its end in time"
                batch = await consumer.getmany(timeout_ms=200)
                for tp_records in batch.values():
                    records.extend(tp_records)
            return records
        finally:
            await asyncio.wait_for(consumer.stop(), 10)


def _event_class(topic_name: str) -> type[Event]:
    class ThingChanged(Event):
        """A test event on this test's own topic."""

        event_type: ClassVar[str] = "agora.test.thing.changed.v1"
        topic: ClassVar[str] = topic_name
        source: ClassVar[str] = "/agora/test"
        key_field: ClassVar[str] = "thing_id"

        thing_id: int

    return ThingChanged


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def engine(create_database: Callable[[str], str]) -> AsyncIterator[AsyncEngine]:
    """An engine on this module's database (tests use their own outbox tables)."""
    eng = create_engine(ServiceSettings(database_url=create_database("kit_relay")))
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def service(engine: AsyncEngine, kafka_bootstrap: str) -> AsyncIterator[Service]:
    """A fresh service-like setup; every relay it built is stopped at the end."""
    settings = ServiceSettings(
        database_url=engine.url.render_as_string(hide_password=False),
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_enable_idempotence=False,
        kafka_request_timeout_ms=3000,
    )
    suffix = uuid.uuid4().hex[:10]
    table = outbox_table(make_metadata(), f"outbox_{suffix}")
    async with engine.begin() as conn:
        await conn.run_sync(table.metadata.create_all)
    topic = f"test.relay.{suffix}"
    assert await ensure_topics(settings, [topic], partitions=PARTITIONS) == [topic]
    svc = Service(settings, engine, table, topic, _event_class(topic), relays=[])
    try:
        yield svc
    finally:
        await asyncio.gather(*(relay.stop() for relay in svc.relays))


def _by_key(records: list[ConsumerRecord[bytes, bytes]]) -> dict[bytes, list[Envelope]]:
    grouped: dict[bytes, list[Envelope]] = {}
    for record in records:
        assert record.key is not None
        assert record.value is not None
        grouped.setdefault(record.key, []).append(Envelope.from_bytes(record.value))
    return grouped


@pytest.mark.asyncio(loop_scope="session")
async def test_committed_write_is_published_once(service: Service) -> None:
    registry = CollectorRegistry()
    relay = service.relay(registry=registry)
    await relay.start()
    envelope = await service.write(key=7, version=1)
    await eventually(lambda: _zero(service.pending))

    records = await service.consume_all()
    assert len(records) == 1
    record = records[0]
    assert record.key == b"7"
    assert dict(record.headers) == {
        "ce_id": str(envelope.id).encode(),
        "ce_type": b"agora.test.thing.changed.v1",
        "content-type": b"application/cloudevents+json",
    }
    assert record.value is not None
    assert Envelope.from_bytes(record.value) == envelope
    assert relay.is_active
    assert relay.is_alive()
    assert registry.get_sample_value("agora_outbox_published_total") == 1
    assert registry.get_sample_value("agora_relay_active") == 1
    assert await relay.backlog() == (0, None)
    await relay.stop()
    assert registry.get_sample_value("agora_relay_active") == 0
    assert not relay.is_active


async def _zero(count: Callable[[], Awaitable[int]]) -> bool:
    return await count() == 0


@pytest.mark.asyncio(loop_scope="session")
async def test_backlog_reports_unpublished_rows(service: Service) -> None:
    for version in (1, 2, 3):
        await service.write(key=1, version=version)
    relay = service.relay()
    count, age = await relay.backlog()
    assert count == 3
    assert age is not None
    assert 0 <= age < 60


class _FailingProducer(AIOKafkaProducer):  # type: ignore[misc]
    """A real producer whose first ``fail`` sends resolve with ``error`` (fault injection)."""

    error: type[KafkaError] = KafkaError
    fail = 0
    delay_s = 0.0

    async def send(self, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        if self.fail > 0:
            self.fail -= 1
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            if self.delay_s:
                # As from a broker: the failure arrives after later sends went out.
                asyncio.get_running_loop().call_later(
                    self.delay_s, future.set_exception, self.error()
                )
            else:
                future.set_exception(self.error())
            return future
        sent: asyncio.Future[Any] = await super().send(*args, **kwargs)
        return sent


@pytest.mark.parametrize(
    ("error", "delay_s", "producers_built", "expected"),
    [
        (OutOfOrderSequenceNumber, 0.0, 2, ["v1", "v2"]),
        (RequestTimedOutError, 0.0, 1, ["v1", "v2"]),
        # v2 went out (and was acked) before v1 failed; only the acked prefix is marked,
        # so v2 is re-sent after v1: at-least-once, and the key's last deliveries in order.
        (RequestTimedOutError, 0.2, 1, ["v2", "v1", "v2"]),
    ],
    ids=["fatal-recreates", "retriable-keeps", "late-failure-resends-tail"],
)
@pytest.mark.asyncio(loop_scope="session")
async def test_failed_send_is_retried_and_fatal_errors_recreate_producer(
    service: Service,
    error: type[KafkaError],
    delay_s: float,
    producers_built: int,
    expected: list[str],
) -> None:
    built: list[_FailingProducer] = []

    def factory() -> AIOKafkaProducer:
        producer = _FailingProducer(
            bootstrap_servers=service.settings.kafka_bootstrap_servers, acks="all"
        )
        producer.error, producer.delay_s = error, delay_s
        producer.fail = 1 if not built else 0
        built.append(producer)
        return producer

    registry = CollectorRegistry()
    relay = service.relay(producer_factory=factory, registry=registry)
    envelopes = {"v1": await service.write(key=1, version=1)}
    envelopes["v2"] = await service.write(key=1, version=2)
    await relay.start()
    await eventually(lambda: _zero(service.pending))

    assert len(built) == producers_built
    records = await service.consume_all()
    ids = [Envelope.from_bytes(r.value or b"").id for r in records]
    assert ids == [envelopes[name].id for name in expected]
    assert registry.get_sample_value("agora_outbox_publish_errors_total") == 1
    t = service.table
    async with service.engine.connect() as conn:
        rows = (await conn.execute(sa.select(t.c.attempts, t.c.last_error).order_by(t.c.id))).all()
    assert rows[0].attempts == 2  # one failure, then the success
    assert [r.last_error for r in rows] == [None, None]  # cleared once published


@pytest.mark.asyncio(loop_scope="session")
async def test_relay_scrubs_rows_past_retention(service: Service) -> None:
    relay = service.relay()
    await relay.start()
    await service.write(key=3, version=1)
    await eventually(lambda: _zero(service.pending))
    t = service.table
    async with service.engine.begin() as conn:
        await conn.execute(sa.update(t).values(published_at=sa.func.now() - timedelta(days=8)))
    await relay.stop()

    restarted = service.relay()  # retention runs when a relay becomes active
    await restarted.start()

    async def scrubbed() -> bool:
        async with service.engine.connect() as conn:
            row = (await conn.execute(sa.select(t.c.value, t.c.scrubbed_at))).one()
        return row.value is None and row.scrubbed_at is not None

    await eventually(scrubbed)


@pytest.mark.asyncio(loop_scope="session")
async def test_published_rows_lose_their_secret_fields_at_once(service: Service) -> None:
    class ThingMailed(Event):
        """A mail command carrying a one-time token, on this test's topic."""

        event_type: ClassVar[str] = "agora.test.thing.mailed.v1"
        topic: ClassVar[str] = service.topic
        source: ClassVar[str] = "/agora/test"
        key_field: ClassVar[str] = "thing_id"

        thing_id: int
        email: str
        token: str

    token = f"one-time-{uuid.uuid4().hex}"
    async with service.uow() as uow:
        uow.add_event(ThingMailed(thing_id=9, email="a@example.com", token=token))
        uow.add_event(service.event.model_validate({"thing_id": 10}))
        await uow.commit()
    relay = service.relay()
    await relay.start()
    await eventually(lambda: _zero(service.pending))

    sent = [Envelope.from_bytes(r.value) for r in await service.consume_all() if r.value]
    assert [e.data.get("token") for e in sent if e.type == ThingMailed.event_type] == [token]
    t = service.table
    async with service.engine.connect() as conn:
        rows = (await conn.execute(sa.select(t.c.value).order_by(t.c.id))).all()
    mailed, plain = (Envelope.from_bytes(r.value) for r in rows)
    assert token.encode() not in rows[0].value
    assert mailed.data == {"thing_id": 9, "email": "a@example.com", "token": "[redacted]"}
    assert plain.data == {"thing_id": 10}  # a row without secrets is left as it was


def _first_occurrences(envelopes: list[Envelope]) -> list[int | None]:
    seen: set[uuid.UUID] = set()
    versions = []
    for envelope in envelopes:
        if envelope.id not in seen:
            seen.add(envelope.id)
            versions.append(envelope.aggregateversion)
    return versions


@pytest.mark.asyncio(loop_scope="session")
async def test_two_relays_publish_each_event_once_in_order(service: Service) -> None:
    registries = [CollectorRegistry(), CollectorRegistry()]
    relays = [service.relay(registry=r) for r in registries]
    await asyncio.gather(*(r.start() for r in relays))
    keys, versions = range(1, 7), range(1, 11)

    async def write_key(key: int) -> None:
        for version in versions:
            await service.write(key=key, version=version)

    await asyncio.gather(*(write_key(k) for k in keys))
    await eventually(lambda: _zero(service.pending))

    assert sum(r.is_active for r in relays) == 1
    assert sum(reg.get_sample_value("agora_relay_active") or 0 for reg in registries) == 1
    records = await service.consume_all()
    assert len(records) == len(keys) * len(versions)  # each event exactly once
    grouped = _by_key(records)
    assert set(grouped) == {str(k).encode() for k in keys}
    for envelopes in grouped.values():
        assert [e.aggregateversion for e in envelopes] == list(versions)


@pytest.mark.asyncio(loop_scope="session")
async def test_standby_takes_over_when_active_stops_or_dies(service: Service) -> None:
    relays = [service.relay(), service.relay()]
    await asyncio.gather(*(r.start() for r in relays))
    await eventually(lambda: _true(any(r.is_active for r in relays)))
    for version in (1, 2, 3):
        await service.write(key=1, version=version)
    await eventually(lambda: _zero(service.pending))

    # Graceful: the active relay stops, the standby takes the lock and publishes.
    first = next(r for r in relays if r.is_active)
    second = next(r for r in relays if r is not first)
    await first.stop()
    await eventually(lambda: _true(second.is_active))
    for version in (4, 5, 6):
        await service.write(key=1, version=version)
    await eventually(lambda: _zero(service.pending))

    # Abrupt: the active relay's session dies (as when its process is killed); Postgres
    # releases the lock and the other relay takes over.
    await first.start()
    pid = second.lock_backend_pid
    assert pid is not None
    async with service.engine.connect() as conn:
        await conn.execute(sa.select(sa.func.pg_terminate_backend(pid)))
    for version in (7, 8, 9):
        await service.write(key=1, version=version)
    await eventually(lambda: _zero(service.pending))
    await eventually(lambda: _true(sum(r.is_active for r in relays) == 1))
    assert all(r.is_alive() for r in relays)

    envelopes = _by_key(await service.consume_all())[b"1"]
    assert _first_occurrences(envelopes) == list(range(1, 10))  # nothing lost, order kept


async def _true(value: bool) -> bool:
    return value


async def _failed_attempt(service: Service) -> bool:
    async with service.engine.connect() as conn:
        query = sa.select(sa.func.count()).where(service.table.c.last_error.is_not(None))
        return int((await conn.execute(query)).scalar_one()) > 0


@pytest.fixture
def thaw_after(kafka_broker: Broker) -> Iterator[Broker]:
    """The broker, thawed at the end whatever happened (other tests share it)."""
    try:
        yield kafka_broker
    finally:
        kafka_broker.thaw()


@pytest.mark.asyncio(loop_scope="session")
async def test_writes_commit_while_broker_frozen_and_publish_after_thaw(
    service: Service, thaw_after: Broker
) -> None:
    relay = service.relay()
    await relay.start()
    await service.write(key=5, version=1)
    await eventually(lambda: _zero(service.pending))

    thaw_after.freeze()
    try:
        started = time.monotonic()
        for version in (2, 3, 4):
            await service.write(key=5, version=version)
        assert time.monotonic() - started < 3  # the write path never waits on the broker
        await eventually(lambda: _failed_attempt(service), timeout_s=15)  # it tried, and failed
        assert await service.pending() == 3
        assert relay.is_alive()
    finally:
        thaw_after.thaw()

    await eventually(lambda: _zero(service.pending), timeout_s=30)
    envelopes = _by_key(await service.consume_all())[b"5"]
    assert _first_occurrences(envelopes) == [1, 2, 3, 4]
