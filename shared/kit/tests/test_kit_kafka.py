"""Producer factory and topic creation against the embedded broker."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from agora_kit.kafka import create_producer, ensure_topics
from agora_kit.settings import ServiceSettings
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError


def _settings(bootstrap: str, timeout_ms: int = 3000) -> ServiceSettings:
    return ServiceSettings(
        service_name="kit-kafka-test",
        kafka_bootstrap_servers=bootstrap,
        kafka_enable_idempotence=False,
        kafka_request_timeout_ms=timeout_ms,
    )


async def _partitions(bootstrap: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await asyncio.wait_for(admin.start(), 10)
    try:
        [described] = await asyncio.wait_for(admin.describe_topics([topic]), 10)
        return len(described["partitions"])
    finally:
        await asyncio.wait_for(admin.close(), 10)


@pytest.mark.asyncio(loop_scope="session")
async def test_ensure_topics_creates_only_missing_topics(kafka_bootstrap: str) -> None:
    settings = _settings(kafka_bootstrap)
    suffix = uuid.uuid4().hex[:10]
    first, second = f"test.kafka.{suffix}.a", f"test.kafka.{suffix}.b"

    assert await ensure_topics(settings, [first], partitions=2) == [first]
    assert await ensure_topics(settings, [first, second, second]) == [second]
    assert await ensure_topics(settings, [first, second]) == []
    assert await ensure_topics(settings, []) == []
    assert await _partitions(kafka_bootstrap, first) == 2
    assert await _partitions(kafka_bootstrap, second) == settings.kafka_topic_partitions


@pytest.mark.asyncio(loop_scope="session")
async def test_concurrent_ensure_topics_both_succeed(kafka_bootstrap: str) -> None:
    settings = _settings(kafka_bootstrap)
    topic = f"test.kafka.{uuid.uuid4().hex[:10]}.race"
    results = await asyncio.gather(*(ensure_topics(settings, [topic]) for _ in range(3)))
    # Whoever loses the race sees "already exists" and is fine with it.
    assert sum(len(r) for r in results) <= 1
    assert await _partitions(kafka_bootstrap, topic) == settings.kafka_topic_partitions


@pytest.mark.asyncio(loop_scope="session")
async def test_ensure_topics_gives_up_on_unreachable_broker() -> None:
    settings = _settings("127.0.0.1:1", timeout_ms=1000)
    started = time.monotonic()
    with pytest.raises(KafkaConnectionError):
        await ensure_topics(settings, ["never.created"])
    assert time.monotonic() - started < 15  # bounded retries, never a hang


@pytest.mark.asyncio(loop_scope="session")
async def test_producer_publishes_with_key_and_headers(kafka_bootstrap: str) -> None:
    settings = _settings(kafka_bootstrap)
    topic = f"test.kafka.{uuid.uuid4().hex[:10]}.produce"
    await ensure_topics(settings, [topic], partitions=1)
    # Built, not started: the caller (the relay, in lifespan) owns its start and stop.
    producer = create_producer(settings, client_id="kit-kafka-test")
    await asyncio.wait_for(producer.start(), 10)
    try:
        metadata = await asyncio.wait_for(
            producer.send_and_wait(topic, b"value", key=b"key", headers=[("h", b"1")]), 10
        )
    finally:
        await asyncio.wait_for(producer.stop(), 10)
    assert (metadata.topic, metadata.partition, metadata.offset) == (topic, 0, 0)
