"""The contract over a real broker: key, headers, value; and the documented subscriber."""

import asyncio
import importlib.util
import time
import uuid
from pathlib import Path
from types import ModuleType

import pytest
from agora_contract import Envelope, Event, UserRegistered, decode
from agora_contract.samples import sample_envelopes
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

Headers = list[tuple[str, bytes]]
SNIPPET = Path(__file__).resolve().parents[1] / "snippets" / "subscriber.py"


def _load_snippet() -> ModuleType:
    """Import the subscriber shown in docs/events.md."""
    spec = importlib.util.spec_from_file_location("agora_contract_snippet_subscriber", SNIPPET)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _topic(bootstrap: str) -> str:
    """Create a fresh three-partition topic."""
    name = f"contract.{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 3, 1)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            meta = await admin.describe_topics([name])
            if meta and len(meta[0].get("partitions", [])) == 3:
                break
            await asyncio.sleep(0.1)
    finally:
        await admin.close()
    return name


async def _publish(bootstrap: str, topic: str, values: list[tuple[bytes, bytes, Headers]]) -> None:
    """Publish (key, value, headers) triples in order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=10000)
    await producer.start()
    try:
        for key, value, headers in values:
            await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


async def _consume(consumer: AIOKafkaConsumer, count: int) -> list[ConsumerRecord]:
    """Read `count` records, failing after a deadline."""
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + 30
    while len(records) < count and time.monotonic() < deadline:
        for batch in (await consumer.getmany(timeout_ms=500)).values():
            records.extend(batch)
    assert len(records) == count
    return records


def _consumer(bootstrap: str, topic: str, group: str | None = None) -> AIOKafkaConsumer:
    """Return a consumer that starts at the beginning and never auto-commits."""
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        fetch_max_wait_ms=50,
    )


@pytest.mark.asyncio
async def test_every_sample_survives_the_broker_with_its_key_and_headers(
    kafka_bootstrap: str,
) -> None:
    topic = await _topic(kafka_bootstrap)
    samples = list(sample_envelopes().values())
    await _publish(
        kafka_bootstrap, topic, [(e.kafka_key(), e.to_bytes(), e.kafka_headers()) for e in samples]
    )
    consumer = _consumer(kafka_bootstrap, topic)
    await consumer.start()
    try:
        records = await _consume(consumer, len(samples))
    finally:
        await consumer.stop()
    by_id = {str(e.id): e for e in samples}
    for record in records:
        headers = dict(record.headers)
        assert headers["content-type"] == b"application/cloudevents+json"
        envelope = Envelope.from_bytes(record.value)
        assert envelope == by_id[headers["ce_id"].decode()]
        assert headers["ce_type"] == envelope.type.encode()
        assert record.key == envelope.subject.encode()
        decode(envelope)
    partitions: dict[bytes, set[int]] = {}
    for record in records:
        partitions.setdefault(record.key, set()).add(record.partition)
    assert all(len(parts) == 1 for parts in partitions.values())


@pytest.mark.asyncio
async def test_documented_subscriber_applies_once_skips_bad_and_commits(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    snippet = _load_snippet()
    applied: list[Event] = []

    async def record_effect(event: Event) -> None:
        applied.append(event)

    monkeypatch.setattr(snippet, "apply", record_effect)
    topic = await _topic(kafka_bootstrap)
    group = f"contract-{uuid.uuid4().hex[:8]}"
    registered = sample_envelopes()["agora.users.user.registered.v1"]
    unknown = registered.model_copy(update={"id": uuid.uuid4(), "type": "agora.users.user.x.v2"})
    key, headers = registered.kafka_key(), registered.kafka_headers()
    await _publish(
        kafka_bootstrap,
        topic,
        [
            (key, registered.to_bytes(), headers),
            (key, b"{not json", []),
            (key, unknown.to_bytes(), unknown.kafka_headers()),
            (key, registered.to_bytes(), headers),  # a redelivery keeps its id
        ],
    )
    consumer = _consumer(kafka_bootstrap, topic, group)
    await consumer.start()
    try:
        seen: set[uuid.UUID] = set()
        records = await _consume(consumer, 4)
        for record in records:
            await snippet.handle(record, seen)
        tp = TopicPartition(records[-1].topic, records[-1].partition)
        await consumer.commit({tp: records[-1].offset + 1})
        assert await consumer.committed(tp) == records[-1].offset + 1
    finally:
        await consumer.stop()
    assert len(applied) == 1
    assert isinstance(applied[0], UserRegistered)
    assert seen == {registered.id}
