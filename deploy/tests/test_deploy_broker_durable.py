"""The durable embedded broker: Tansu on local S3 storage keeps its log across SIGKILLs."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from agora_deploy.launchers.kafka import DurableBroker, start_durable_kafka, start_kafka
from agora_deploy.launchers.process import ManagedProcess, free_port
from agora_deploy.launchers.retention import NS, BatchObject, expired, list_objects, sweep
from agora_deploy.launchers.s3 import bucket_ready, load_credentials
from agora_deploy.launchers.storage import SOCKET_DIR, StoragePorts
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError

GROUP = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 500,
    "fetch_max_wait_ms": 50,
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    "request_timeout_ms": 10000,
}


@pytest.fixture
def durable(tmp_path: Path) -> Iterator[DurableBroker]:
    broker = start_durable_kafka(
        tmp_path / "data", tmp_path / "logs", port=free_port(), die_with_parent=True
    )
    try:
        yield broker
    finally:
        broker.stop()


def _kill(process: ManagedProcess) -> None:
    """SIGKILL the process group and reap it (no chance to flush anything)."""
    assert process.proc is not None
    os.killpg(process.proc.pid, signal.SIGKILL)
    process.proc.wait(timeout=10)


async def _create_topic(bootstrap: str, partitions: int, **configs: str) -> str:
    name = f"durable.{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs)])
    finally:
        await admin.close()
    return name


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """Send ``values`` with acks=all: the first few one at a time, the rest batched."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=False,
        linger_ms=5,
        request_timeout_ms=10000,
    )
    await producer.start()
    try:
        for value in values[:10]:
            await asyncio.wait_for(producer.send_and_wait(topic, value, key=value[-1:]), 15)
        futures = [await producer.send(topic, v, key=v[-1:]) for v in values[10:]]
        await asyncio.wait_for(asyncio.gather(*futures), 30)
    finally:
        await producer.stop()


async def _started(make: Callable[[], AIOKafkaConsumer], timeout: float = 30) -> AIOKafkaConsumer:
    """Start a consumer as a client would after a broker restart: retry bootstrapping a while.

    A restarted broker answers its port (its health) a moment before it serves metadata.
    """
    deadline = time.monotonic() + timeout
    while True:
        consumer = make()
        try:
            await consumer.start()
        except KafkaConnectionError:
            await consumer.stop()  # a failed start still holds a client to close
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
        else:
            return consumer


async def _consume(
    bootstrap: str, topic: str, group: str, want: int, partitions: int, timeout: float = 60
) -> list[bytes]:
    """Join ``group``, read until ``want`` records arrived, commit, and return the values."""
    consumer = await _started(
        lambda: AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, **GROUP)
    )
    got: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout
        # Joining a group on Tansu takes ~5 s; poll (which drives the join) with a deadline.
        while len(got) < want and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                got.extend(r.value for r in records if r.value is not None)
        assert len(consumer.assignment()) == partitions
        if got:
            await consumer.commit()
        # Nothing beyond what we expect turns up (no duplicates from the restarts either).
        extra = await consumer.getmany(timeout_ms=500)
        got.extend(r.value for records in extra.values() for r in records if r.value is not None)
    finally:
        await consumer.stop()
    return got


@pytest.mark.asyncio
async def test_acked_events_survive_broker_and_storage_kills(durable: DurableBroker) -> None:
    first = [f"first-{i:04d}".encode() for i in range(300)]
    topic = await _create_topic(durable.bootstrap, 3)
    await _produce(durable.bootstrap, topic, first)

    # The broker dies without a chance to flush; it restarts on the same port and storage.
    _kill(durable.broker.process)
    durable.broker.restart()
    got = await _consume(durable.bootstrap, topic, "g-one", len(first), 3)
    assert sorted(got) == sorted(first)

    second = [f"second-{i:04d}".encode() for i in range(200)]
    await _produce(durable.bootstrap, topic, second)
    usage = durable.disk_usage()

    # Both die; storage comes back first (same dir, ports and keys), then the broker.
    _kill(durable.broker.process)
    _kill(durable.storage.process)
    assert not durable.health()
    durable.storage.restart()
    durable.broker.restart()
    assert durable.health()
    assert durable.disk_usage() >= usage * 0.9

    # A new group reads everything from the start; the first group's commits survived too.
    everything = await _consume(durable.bootstrap, topic, "g-two", 500, 3)
    assert sorted(everything) == sorted(first + second)
    rest = await _consume(durable.bootstrap, topic, "g-one", len(second), 3)
    assert sorted(rest) == sorted(second)


def test_storage_keeps_its_keys_and_ports(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ports = StoragePorts.load_or_allocate(data)
    assert StoragePorts.load_or_allocate(data) == ports
    assert len(set(ports.all())) == len(ports.all())
    keys = load_credentials(data)
    assert load_credentials(data) == keys
    assert (data / "s3.json").stat().st_mode & 0o077 == 0

    broker = start_durable_kafka(data, tmp_path / "logs", port=free_port(), die_with_parent=True)
    try:
        assert broker.storage.ports == ports
        assert (broker.storage.endpoint.access_key, broker.storage.endpoint.secret_key) == keys
        wrong = type(broker.storage.endpoint)(
            broker.storage.endpoint.url, "tansu", keys[0], "not-the-secret"
        )
        assert not bucket_ready(wrong)
        # What the supervisor restarts them with: a health check and the ports to wait for.
        processes = [broker.storage.process, broker.broker.process]
        assert [p.name for p in processes] == ["storage", "kafka"]
        assert all(p.health is not None and p.health() for p in processes)
        assert all(p.ports for p in processes)
        assert broker.disk_usage() > 0
    finally:
        broker.stop()
    assert not broker.health()
    # weed's per-port Unix sockets in /tmp go with it.
    left = [p for p in SOCKET_DIR.glob("seaweedfs-*.sock") if p.stem.endswith(str(ports.s3))]
    assert left == []


def test_memory_broker_still_available(tmp_path: Path) -> None:
    broker = start_kafka(tmp_path / "k.log", port=free_port(), die_with_parent=True)
    try:
        assert not broker.durable
        assert broker.health()
    finally:
        broker.stop()
    assert not broker.health()


def _batch(offset: int, size: int, age_s: float, now: dt.datetime) -> BatchObject:
    return BatchObject(f"b{offset}", offset, size, now - dt.timedelta(seconds=age_s))


def test_retention_deletes_an_old_prefix_and_never_the_newest() -> None:
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    old_new = [_batch(0, 10, 300, now), _batch(5, 10, 200, now), _batch(9, 10, 5, now)]
    doomed = expired(old_new, now=now, retention_ms=60_000, retention_bytes=-1)
    assert [b.base_offset for b in doomed] == [0, 5]
    # All expired: the newest batch still stays (Tansu's latest offset comes from it).
    all_old = [_batch(0, 10, 300, now), _batch(5, 10, 200, now)]
    assert expired(all_old, now=now, retention_ms=1, retention_bytes=-1) == all_old[:1]
    # By size: drop the oldest until the partition fits.
    sized = [_batch(0, 40, 1, now), _batch(1, 40, 1, now), _batch(2, 40, 1, now)]
    assert expired(sized, now=now, retention_ms=-1, retention_bytes=90) == sized[:1]
    # Only a prefix: a young batch stops the time rule even if older-looking ones follow.
    mixed = [_batch(0, 10, 300, now), _batch(1, 10, 1, now), _batch(2, 10, 300, now),
             _batch(3, 10, 1, now)]  # fmt: skip
    assert expired(mixed, now=now, retention_ms=60_000, retention_bytes=-1) == mixed[:1]


@pytest.mark.asyncio
async def test_retention_sweep_on_a_live_broker(durable: DurableBroker) -> None:
    kept_topic = await _create_topic(durable.bootstrap, 1)
    short_topic = await _create_topic(durable.bootstrap, 1, **{"retention.ms": "3000"})
    old = [f"old-{i:04d}".encode() for i in range(30)]
    await _produce(durable.bootstrap, kept_topic, old)
    await _produce(durable.bootstrap, short_topic, old)
    # Let the first batches age past the topic's 3 s retention. S3 times have 1 s granularity,
    # so the margin keeps the new batches (written well under 2 s before the sweep) young.
    await asyncio.sleep(3.5)
    new = [f"new-{i:04d}".encode() for i in range(30)]
    await _produce(durable.bootstrap, short_topic, new)

    report = await asyncio.to_thread(durable.sweep)
    assert report.deleted_objects > 0
    assert report.log_start[f"{kept_topic}/0"] == 0
    assert report.log_start[f"{short_topic}/0"] >= len(old)

    endpoint = durable.storage.endpoint
    prefix = f"clusters/tansu_cluster/topics/{short_topic}/partitions/0000000000/records/"
    left = list_objects(endpoint, prefix)
    assert left
    assert (
        min(int(e.findtext(f"{NS}Key", "").rsplit("/", 1)[-1][:20]) for e in left)
        == (report.log_start[f"{short_topic}/0"])
    )

    consumer = AIOKafkaConsumer(bootstrap_servers=durable.bootstrap, **GROUP)
    await consumer.start()
    try:
        tp = TopicPartition(short_topic, 0)
        consumer.assign([tp])
        ends = await consumer.end_offsets([tp])
        starts = await consumer.beginning_offsets([tp])
        assert starts[tp] == report.log_start[f"{short_topic}/0"]
        assert ends[tp] > starts[tp]  # the latest offset is still answered
        await consumer.seek_to_beginning(tp)
        got: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(got) < len(new) and time.monotonic() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=500)
            got.extend(r.value for records in batch.values() for r in records if r.value)
        assert sorted(got) == sorted(new)
    finally:
        await consumer.stop()

    # A second sweep finds nothing more to expire.
    again = await asyncio.to_thread(sweep, endpoint, default_retention_ms=3_600_000)
    assert again.deleted_objects == 0
    assert again.log_start == report.log_start


@pytest.mark.asyncio
async def test_broker_rides_out_a_storage_restart(durable: DurableBroker) -> None:
    topic = await _create_topic(durable.bootstrap, 2)
    before = [f"before-{i:03d}".encode() for i in range(50)]
    await _produce(durable.bootstrap, topic, before)

    # Only the storage dies: produce fails (the relay retries), Tansu itself stays up.
    _kill(durable.storage.process)
    assert durable.broker.health()
    with pytest.raises(Exception):  # noqa: B017, PT011 - aiokafka raises several kinds
        await asyncio.wait_for(_produce(durable.bootstrap, topic, [b"lost-0"]), 20)

    # Restarting the storage alone is enough: the same broker process serves again.
    durable.storage.restart()
    after = [f"after-{i:03d}".encode() for i in range(50)]
    await _produce(durable.bootstrap, topic, after)
    got = await _consume(durable.bootstrap, topic, "g-storage", 100, 2)
    assert sorted(got) == sorted(before + after)
