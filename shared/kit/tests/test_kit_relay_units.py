"""Relay logic without I/O: error classification, tunables, liveness (fakes only here)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import pytest
from agora_kit.db import make_metadata
from agora_kit.outbox import outbox_table
from agora_kit.outbox.publisher import AckTimeoutError, is_fatal
from agora_kit.outbox.relay import OutboxRelay
from agora_kit.outbox.relay_config import RelayConfig
from agora_kit.settings import ServiceSettings
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NotLeaderForPartitionError,
    OutOfOrderSequenceNumber,
    ProducerClosed,
    ProducerFenced,
    RequestTimedOutError,
)
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine


@pytest.mark.parametrize(
    "error",
    [
        RequestTimedOutError(),
        NotLeaderForPartitionError(),
        KafkaConnectionError(),
        KafkaTimeoutError(),
        TimeoutError(),
    ],
)
def test_transient_errors_keep_the_producer(error: BaseException) -> None:
    assert not is_fatal(error)


@pytest.mark.parametrize(
    "error",
    [
        OutOfOrderSequenceNumber(),
        ProducerClosed(),
        ProducerFenced(),
        KafkaError("unknown"),
        AckTimeoutError("wedged"),
        ValueError("bug"),
    ],
)
def test_fatal_errors_recreate_the_producer(error: BaseException) -> None:
    assert is_fatal(error)


def test_config_follows_settings() -> None:
    settings = ServiceSettings(
        kafka_request_timeout_ms=60_000,
        relay_batch_size=50,
        outbox_retention_days=3,
        outbox_delete_after_days=1,
    )
    config = RelayConfig.from_settings(settings, poll_interval_s=0.5)
    assert (config.batch_size, config.poll_interval_s, config.send_timeout_s) == (50, 0.5, 60)
    assert config.retention.days == 3
    assert config.delete_after.days == 3  # never delete before the scrub
    # A long Kafka timeout stretches the stall limit: a slow broker is not a wedged relay.
    assert config.stall_limit_s() > config.ack_timeout_s + config.send_timeout_s
    assert RelayConfig(stall_after_s=5).stall_limit_s() == 5


class _Died(BaseException):
    """Escapes every ``except Exception``: the relay task dies with it."""


class _FakeEngine:
    """Stands in for an AsyncEngine whose connect either dies or never returns."""

    def __init__(self, *, die: bool) -> None:
        self.die = die

    async def connect(self) -> Any:
        if self.die:
            raise _Died
        await asyncio.Event().wait()


def _relay(engine: _FakeEngine, **config: Any) -> OutboxRelay:
    def factory() -> AIOKafkaProducer:
        raise AssertionError("never reached")

    return OutboxRelay(
        engine=cast(AsyncEngine, engine),
        outbox=outbox_table(make_metadata()),
        producer_factory=factory,
        registry=CollectorRegistry(),
        config=RelayConfig(stop_timeout_s=2, **config),
    )


async def _until(check: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.mark.asyncio(loop_scope="session")
async def test_not_alive_when_task_died() -> None:
    relay = _relay(_FakeEngine(die=True))
    assert relay.is_alive()  # not started: nothing is wedged
    await relay.start()
    try:
        await _until(lambda: not relay.is_alive())
    finally:
        await relay.stop()
    assert relay.is_alive()  # stopped on purpose


@pytest.mark.asyncio(loop_scope="session")
async def test_not_alive_when_stalled_and_stop_is_bounded() -> None:
    relay = _relay(_FakeEngine(die=False), stall_after_s=0.1)
    await relay.start()
    try:
        assert relay.is_alive()
        await _until(lambda: not relay.is_alive())
    finally:
        started = time.monotonic()
        await relay.stop()
        assert time.monotonic() - started < 2
    assert not relay.is_active
