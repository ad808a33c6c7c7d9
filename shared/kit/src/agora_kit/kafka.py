"""Kafka plumbing: the producer every publisher uses, and idempotent topic creation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from agora_kit.settings import ServiceSettings

log = logging.getLogger(__name__)

#: Small: the relay sends a batch, then awaits it; a long linger only adds latency.
PRODUCER_LINGER_MS = 5
#: Bounded so one batch of big rows cannot hold the producer's memory hostage.
PRODUCER_MAX_BATCH_BYTES = 256 * 1024
#: Attempts and overall budget of ``ensure_topics`` (a broker still starting is retried).
ENSURE_TOPICS_ATTEMPTS = 6


def create_producer(settings: ServiceSettings, *, client_id: str) -> AIOKafkaProducer:
    """Build (not start) a producer: acks=all, bounded batches and request timeouts."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=client_id,
        acks="all",
        # Apache Kafka: on (no duplicates from internal retries). The embedded broker rejects it.
        enable_idempotence=settings.kafka_enable_idempotence,
        request_timeout_ms=settings.kafka_request_timeout_ms,
        linger_ms=PRODUCER_LINGER_MS,
        max_batch_size=PRODUCER_MAX_BATCH_BYTES,
        # Per-key order survives internal retries: aiokafka keeps one in-flight request per
        # broker and mutes its partitions, so a retried batch is never overtaken.
        retry_backoff_ms=200,
    )


def _is_retriable(exc: BaseException) -> bool:
    if isinstance(exc, TimeoutError):
        return True
    return isinstance(exc, KafkaError) and bool(exc.retriable)


async def _create_missing(
    settings: ServiceSettings, names: list[str], partitions: int, timeout_s: float
) -> list[str]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=f"{settings.service_name}-admin",
        request_timeout_ms=settings.kafka_request_timeout_ms,
    )
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        existing = set(await asyncio.wait_for(admin.list_topics(), timeout_s))
        missing = [name for name in names if name not in existing]
        if not missing:
            return []
        new_topics = [
            NewTopic(name, partitions, settings.kafka_replication_factor) for name in missing
        ]
        response = await asyncio.wait_for(
            admin.create_topics(new_topics, timeout_ms=settings.kafka_request_timeout_ms),
            timeout_s,
        )
        created: list[str] = []
        # Entries are (topic, error_code[, error_message]) depending on the protocol version.
        for entry in response.topic_errors:
            topic, code = entry[0], entry[1]
            if code == 0:
                created.append(topic)
                continue
            error = for_code(code)
            if error is TopicAlreadyExistsError:
                continue  # another process won the race: fine, the topic is there
            message = entry[2] if len(entry) > 2 else None
            raise error(f"creating topic {topic!r}: {message or error.__name__}")
        return created
    finally:
        await asyncio.wait_for(admin.close(), timeout_s)


async def ensure_topics(
    settings: ServiceSettings, topics: Iterable[str], *, partitions: int | None = None
) -> list[str]:
    """Create the ``topics`` that are missing (never via auto-creation); return those created."""
    names = sorted(set(topics))
    if not names:
        return []
    count = partitions if partitions is not None else settings.kafka_topic_partitions
    timeout_s = settings.kafka_request_timeout_ms / 1000
    created: list[str] = []
    async for attempt in AsyncRetrying(
        retry=retry_if_exception(_is_retriable),
        stop=stop_after_attempt(ENSURE_TOPICS_ATTEMPTS) | stop_after_delay(timeout_s * 3),
        wait=wait_exponential_jitter(multiplier=0.2, max=3.0, jitter=0.2),
        reraise=True,
    ):
        with attempt:
            created = await _create_missing(settings, names, count, timeout_s)
    if created:
        log.info("kafka.topics_created", extra={"topics": created, "partitions": count})
    return created
