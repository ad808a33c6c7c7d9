"""Fixtures of the items suite: one migrated database, one running app, a tap on items.events.

The app runs once per test session (its consumer joins a group once, ~5 s on the embedded
broker); tests stay independent by using fresh user ids, so they never see each other's
items, and by matching events on their own item ids.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
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
from agora_kit.settings import ServiceSettings
from agora_kit.testing.app import ServiceFactory
from agora_kit.testing.jwt import JwksServer, JwtKeyring

PROJECT_DIR = Path(__file__).resolve().parents[1]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def items_database(service_factory: ServiceFactory) -> str:
    """A fresh database migrated with the service's Alembic chain."""
    url = await service_factory.database("items_test", PROJECT_DIR)
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
    service_factory: ServiceFactory, items_database: str, jwks_server: JwksServer
) -> ItemsSettings:
    """Settings for the suite's app: a users topic and consumer group of its own."""
    suffix = uuid.uuid4().hex[:8]
    return service_factory.settings(
        ItemsSettings,
        items_database,
        jwks_url=jwks_server.url,
        users_topic=f"test.items.users-events.{suffix}",
        consumer_group=f"items-test-{suffix}",
    )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def items_tap(
    service_factory: ServiceFactory, items_settings: ItemsSettings
) -> AsyncIterator[ItemsTap]:
    """Collect items.events from its current end (assigned partitions: no group join)."""
    await ensure_topics(items_settings, [ITEMS_EVENTS, items_settings.users_topic])
    async with ItemsTap(service_factory.tap_consumer()).running([ITEMS_EVENTS]) as tap:
        yield tap


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def items_svc(
    service_factory: ServiceFactory,
    items_settings: ItemsSettings,
    jwt_keyring: JwtKeyring,
    items_tap: ItemsTap,
) -> AsyncIterator[ItemsHarness]:
    """The running app (lifespan: relay and consumer) with a client and a producer."""
    engine = create_engine(items_settings)
    app = create_app(items_settings)
    try:
        async with service_factory.producer() as producer, service_factory.running(app) as client:
            yield ItemsHarness(
                app=app,
                client=client,
                keyring=jwt_keyring,
                settings=items_settings,
                tap=items_tap,
                producer=producer,
                engine=engine,
            )
    finally:
        await engine.dispose()
