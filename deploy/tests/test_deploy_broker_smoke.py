"""Every broker feature Agora relies on, checked against the embedded broker."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from agora_deploy.launchers.kafka import Broker, start_kafka
from agora_deploy.launchers.process import free_port
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata

FAST_GROUP = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 500,
    "fetch_max_wait_ms": 50,
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
}


@pytest.fixture(scope="module")
def memory_kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A broker on memory storage, for the checks of exact end offsets."""
    broker = start_kafka(
        tmp_path_factory.mktemp("memory-kafka") / "kafka.log",
        port=free_port(),
        die_with_parent=True,
    )
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


async def _create_topic(bootstrap: str, partitions: int = 3) -> str:
    name = f"smoke.{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            meta = await admin.describe_topics([name])
            if meta and len(meta[0].get("partitions", [])) == partitions:
                break
            await asyncio.sleep(0.1)
    finally:
        await admin.close()
    return name


async def _producer(bootstrap: str, **kwargs: object) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, **kwargs
    )
    await producer.start()
    return producer


async def _wait_assignment(consumer: AIOKafkaConsumer, want: int, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(consumer.assignment()) == want:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"assignment {consumer.assignment()} never reached {want} partitions")


@pytest.mark.asyncio
async def test_memory_broker_partitions_keys_headers_and_end_offsets(
    memory_kafka_bootstrap: str,
) -> None:
    """End offsets are exact on the memory broker only (on S3 storage Tansu reports them low)."""
    kafka_bootstrap = memory_kafka_bootstrap
    topic = await _create_topic(kafka_bootstrap, 3)
    producer = await _producer(kafka_bootstrap)
    try:
        sent: dict[bytes, set[int]] = {}
        for i in range(30):
            key = f"user-{i % 5}".encode()
            md = await producer.send_and_wait(
                topic, f"v{i}".encode(), key=key, headers=[("ce_id", str(i).encode())]
            )
            sent.setdefault(key, set()).add(md.partition)
        # One key always lands on one partition, and the keys spread over several partitions.
        assert all(len(parts) == 1 for parts in sent.values())
        assert len({p for parts in sent.values() for p in parts}) > 1
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, **FAST_GROUP)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(3)]
        ends = await consumer.end_offsets(tps)
        assert sum(ends.values()) == 30
        seen: dict[bytes, list[bytes]] = {}
        deadline = time.monotonic() + 20
        while sum(len(v) for v in seen.values()) < 30 and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for rec in records:
                    assert rec.key is not None
                    assert rec.value is not None
                    assert dict(rec.headers)["ce_id"] == rec.value[1:]
                    seen.setdefault(rec.key, []).append(rec.value)
        assert sum(len(v) for v in seen.values()) == 30
        # Per-key order is kept.
        for values in seen.values():
            assert values == sorted(values, key=lambda v: int(v[1:]))
    finally:
        await consumer.stop()


@pytest.mark.asyncio
async def test_memory_broker_group_commit_committed_and_lag(memory_kafka_bootstrap: str) -> None:
    """Lag from committed() and end_offsets() (exact on the memory broker only)."""
    kafka_bootstrap = memory_kafka_bootstrap
    topic = await _create_topic(kafka_bootstrap, 1)
    group = f"smoke-{uuid.uuid4().hex[:8]}"
    producer = await _producer(kafka_bootstrap)
    try:
        for i in range(5):
            await producer.send_and_wait(topic, f"m{i}".encode(), key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, group_id=group, **FAST_GROUP
    )
    await consumer.start()
    tp = TopicPartition(topic, 0)
    try:
        await _wait_assignment(consumer, 1)
        got: list[Any] = []
        deadline = time.monotonic() + 20
        while len(got) < 3 and time.monotonic() < deadline:
            for records in (await consumer.getmany(tp, timeout_ms=500, max_records=3)).values():
                got.extend(records)
        third = got[2]
        await consumer.commit({tp: OffsetAndMetadata(third.offset + 1, "")})
        assert await consumer.committed(tp) == third.offset + 1
        end = (await consumer.end_offsets([tp]))[tp]
        assert end - (third.offset + 1) == 2  # lag from committed() and end_offsets()
    finally:
        await consumer.stop()


@pytest.mark.asyncio
async def test_two_members_rebalance(kafka_bootstrap: str) -> None:
    topic = await _create_topic(kafka_bootstrap, 3)
    group = f"smoke-{uuid.uuid4().hex[:8]}"
    first = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group, **FAST_GROUP)
    second = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, group_id=group, **FAST_GROUP
    )
    await first.start()
    try:
        await _wait_assignment(first, 3)
        await second.start()
        try:
            # Both members must keep polling for the group to rebalance.
            deadline = time.monotonic() + 45
            while time.monotonic() < deadline:
                await asyncio.gather(first.getmany(timeout_ms=200), second.getmany(timeout_ms=200))
                a, b = first.assignment(), second.assignment()
                if a and b and len(a) + len(b) == 3:
                    break
            a, b = first.assignment(), second.assignment()
            assert a, f"no rebalance: {a} / {b}"
            assert b, f"no rebalance: {a} / {b}"
            assert not (a & b)
            assert len(a | b) == 3
        finally:
            await second.stop()
        deadline = time.monotonic() + 45
        while len(first.assignment()) != 3 and time.monotonic() < deadline:
            await first.getmany(timeout_ms=200)
        assert len(first.assignment()) == 3
    finally:
        await first.stop()


@pytest.mark.asyncio
async def test_producer_survives_broker_freeze(kafka_broker: Broker) -> None:
    topic = await _create_topic(kafka_broker.bootstrap, 1)
    producer = await _producer(kafka_broker.bootstrap, request_timeout_ms=1500)
    try:
        await producer.send_and_wait(topic, b"before", key=b"k")
        kafka_broker.freeze()
        try:
            with pytest.raises(Exception):  # noqa: B017, PT011 - aiokafka raises several kinds
                await asyncio.wait_for(producer.send_and_wait(topic, b"frozen", key=b"k"), 5)
        finally:
            kafka_broker.thaw()
        md = None
        deadline = time.monotonic() + 20
        while md is None and time.monotonic() < deadline:
            try:
                md = await asyncio.wait_for(producer.send_and_wait(topic, b"after", key=b"k"), 5)
            except Exception:
                await asyncio.sleep(0.2)
        assert md is not None, "producer did not recover after SIGCONT"
    finally:
        await producer.stop()
