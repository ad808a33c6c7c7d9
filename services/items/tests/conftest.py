"""Fixtures of the items suite: one migrated database, one running app, a tap on items.events.

The app runs once per test session (its consumer joins a group once, ~5 s on the embedded
broker); tests stay independent by using fresh user ids, so they never see each other's
items, and by matching events on their own item ids.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
import sqlalchemy as sa
from agora_contract.topics import ITEMS_EVENTS
from agora_items.config import ItemsSettings
from agora_items.main import create_app
from agora_items.testing import ItemsHarness, ItemsTap
from agora_kit.db import create_engine
from agora_kit.kafka import ensure_topics
from agora_kit.settings import Environment, ServiceSettings
from agora_kit.testing.app import app_client
from agora_kit.testing.db import migrate
from agora_kit.testing.jwt import JwksServer, JwtKeyring
from agora_kit.testing.poll import eventually
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

PROJECT_DIR = Path(__file__).resolve().parents[1]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def items_database(create_database: Callable[[str], str]) -> str:
    """A fresh database migrated with the service's Alembic chain."""
    url = create_database("items_test")
    await migrate(url, PROJECT_DIR)
    # Item ids far from 1, so events another suite publishes on the shared items.events
    # (other databases count from 1 too) are never mistaken for this suite's.
    engine = create_engine(ServiceSettings(database_url=url))
    try:
        async with engine.begin() as conn:
            start = random.randrange(10**12, 9 * 10**12)
            await conn.execute(sa.text(f"ALTER TABLE item ALTER COLUMN id RESTART WITH {start}"))
    finally:
        await engine.dispose()
    return url


@pytest.fixture(scope="session")
def items_settings(
    items_database: str, redis_url: str, kafka_bootstrap: str, jwks_server: JwksServer
) -> ItemsSettings:
    """Settings for the suite's app: a users topic and consumer group of its own."""
    suffix = uuid.uuid4().hex[:8]
    return ItemsSettings(
        env=Environment.TEST,
        database_url=items_database,
        redis_url=redis_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_enable_idempotence=False,
        jwks_url=jwks_server.url,
        users_topic=f"test.items.users-events.{suffix}",
        consumer_group=f"items-test-{suffix}",
        log_json=False,
        log_level="WARNING",
        relay_poll_interval_s=0.2,
    )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def items_tap(items_settings: ItemsSettings) -> AsyncIterator[ItemsTap]:
    """Collect items.events from its current end (assigned partitions: no group join)."""
    await ensure_topics(items_settings, [ITEMS_EVENTS, items_settings.users_topic])
    consumer = AIOKafkaConsumer(
        bootstrap_servers=items_settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        request_timeout_ms=10_000,
        fetch_max_wait_ms=50,
    )
    tap = ItemsTap(consumer)
    try:
        await tap.start([ITEMS_EVENTS])
        yield tap
    finally:
        await tap.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def items_svc(
    items_settings: ItemsSettings, jwt_keyring: JwtKeyring, items_tap: ItemsTap
) -> AsyncIterator[ItemsHarness]:
    """The running app (lifespan: relay and consumer) with a client and a producer."""
    producer = AIOKafkaProducer(
        bootstrap_servers=items_settings.kafka_bootstrap_servers,
        enable_idempotence=False,
        acks="all",
        request_timeout_ms=10_000,
    )
    await asyncio.wait_for(producer.start(), timeout=30)
    engine = create_engine(items_settings)
    app = create_app(items_settings)
    try:
        async with app_client(app) as client:
            harness = ItemsHarness(
                app=app,
                client=client,
                keyring=jwt_keyring,
                settings=items_settings,
                tap=items_tap,
                producer=producer,
                engine=engine,
            )
            # Joined before the first test: cascades are then timed by the handler alone,
            # and shutdown never interrupts a join (which would leak its connections).
            await eventually(lambda: harness.consumer.assignment, timeout_s=60)
            yield harness
    finally:
        await engine.dispose()
        await asyncio.wait_for(producer.stop(), timeout=15)
