"""The topic bootstrap component: creates topics in the background, never blocks start-up."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable

import pytest
from agora_kit import topics as topics_module
from agora_kit.consumer.retry import Backoff
from agora_kit.lifecycle import Component
from agora_kit.settings import ServiceSettings
from agora_kit.topics import TopicBootstrap
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError

FAST = Backoff(base_s=0.01, max_s=0.05)


def _settings(bootstrap: str, timeout_ms: int = 3000) -> ServiceSettings:
    return ServiceSettings(
        service_name="kit-topics-test",
        kafka_bootstrap_servers=bootstrap,
        kafka_enable_idempotence=False,
        kafka_request_timeout_ms=timeout_ms,
        shutdown_timeout_s=5,
    )


async def _existing(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await asyncio.wait_for(admin.start(), 10)
    try:
        return set(await asyncio.wait_for(admin.list_topics(), 10))
    finally:
        await asyncio.wait_for(admin.close(), 10)


def test_topic_bootstrap_is_a_component() -> None:
    bootstrap = TopicBootstrap(_settings("127.0.0.1:1"), ["a"])
    assert isinstance(bootstrap, Component)
    assert bootstrap.name == "topic-bootstrap"


@pytest.mark.asyncio(loop_scope="session")
async def test_creates_the_missing_topics(kafka_bootstrap: str) -> None:
    suffix = uuid.uuid4().hex[:10]
    wanted = [f"test.topics.{suffix}.a", f"test.topics.{suffix}.b"]
    bootstrap = TopicBootstrap(_settings(kafka_bootstrap), [*wanted, wanted[0]])
    await bootstrap.start()
    try:
        await asyncio.wait_for(bootstrap.done.wait(), 30)
        assert bootstrap.is_alive()
    finally:
        await bootstrap.stop()
    assert set(wanted) <= await _existing(kafka_bootstrap)


@pytest.mark.asyncio(loop_scope="session")
async def test_broker_down_never_blocks_start_and_stop_is_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bootstrap = TopicBootstrap(_settings("127.0.0.1:1", timeout_ms=1000), ["never.created"])
    with caplog.at_level(logging.WARNING, logger="agora.topics"):
        started = time.monotonic()
        await bootstrap.start()
        assert time.monotonic() - started < 0.5
        # Still trying: alive, not done; the first failed round shows in the log.
        deadline = time.monotonic() + 20
        while "topics not ensured yet" not in caplog.text:
            assert time.monotonic() < deadline, "no retry was logged"
            await asyncio.sleep(0.1)
        assert bootstrap.is_alive()
        assert not bootstrap.done.is_set()
        stopping = time.monotonic()
        await bootstrap.stop()
        assert time.monotonic() - stopping < 5
    assert not bootstrap.done.is_set()


@pytest.mark.asyncio(loop_scope="session")
async def test_retries_with_backoff_until_the_broker_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[list[str]] = []

    async def flaky(settings: ServiceSettings, topics: Iterable[str]) -> list[str]:
        calls.append(list(topics))
        if len(calls) < 3:
            raise KafkaConnectionError("broker away")
        return []

    monkeypatch.setattr(topics_module, "ensure_topics", flaky)
    bootstrap = TopicBootstrap(_settings("127.0.0.1:1"), ["b", "a", "b"], backoff=FAST)
    await bootstrap.start()
    try:
        await asyncio.wait_for(bootstrap.done.wait(), 5)
    finally:
        await bootstrap.stop()
    assert calls == [["a", "b"]] * 3
    assert bootstrap.is_alive()


@pytest.mark.asyncio(loop_scope="session")
async def test_stop_cancels_a_retrying_task(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0

    async def down(settings: ServiceSettings, topics: Iterable[str]) -> list[str]:
        nonlocal calls
        calls += 1
        raise KafkaConnectionError("broker away")

    monkeypatch.setattr(topics_module, "ensure_topics", down)
    bootstrap = TopicBootstrap(_settings("127.0.0.1:1"), ["a"], backoff=FAST)
    await bootstrap.start()
    deadline = time.monotonic() + 5
    while calls < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    await bootstrap.stop()
    seen = calls
    await asyncio.sleep(0.2)
    assert calls == seen  # no attempt after stop
    assert not bootstrap.done.is_set()
