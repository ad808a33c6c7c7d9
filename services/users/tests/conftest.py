"""Fixtures of the users suite: one migrated database, one running app, a tap on its topics.

The app runs once per test session against the embedded Postgres, Redis and broker. Tests
stay independent by using fresh email addresses, fresh client addresses (the throttles
count per client) and fresh ``X-Request-ID``s (messages are matched on ``correlationid``).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from agora_contract.topics import NOTIFIER_COMMANDS, USERS_EVENTS
from agora_kit.kafka import ensure_topics
from agora_kit.settings import Environment
from agora_kit.testing.db import migrate
from agora_users.config import UsersSettings
from agora_users.main import create_app
from agora_users.testing import PROJECT_DIR, ClientFactory, UsersTap
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

_addresses = itertools.count(1)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def users_database(create_database: Callable[[str], str]) -> str:
    """A fresh database migrated with the service's Alembic chain."""
    url = create_database("users_test")
    await migrate(url, PROJECT_DIR)
    return url


@pytest.fixture(scope="session")
def users_keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The suite's key folder (the app creates the first key, as in development)."""
    return tmp_path_factory.mktemp("users-keys") / "keys"


@pytest.fixture(scope="session")
def users_settings(
    users_database: str, redis_url: str, kafka_bootstrap: str, users_keys_dir: Path
) -> UsersSettings:
    """Settings of the suite's app (development: keys are generated in the key folder)."""
    return UsersSettings(
        env=Environment.DEVELOPMENT,
        database_url=users_database,
        redis_url=redis_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_enable_idempotence=False,
        keys_dir=users_keys_dir,
        key_reload_interval_s=0.2,
        log_json=False,
        log_level="WARNING",
        shutdown_timeout_s=5.0,
        relay_poll_interval_s=0.2,
    )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def users_engine(users_database: str) -> AsyncIterator[AsyncEngine]:
    """An engine for the tests' own reads of the database."""
    engine = create_async_engine(users_database, pool_size=2, max_overflow=2)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def users_tap(
    users_settings: UsersSettings, users_engine: AsyncEngine
) -> AsyncIterator[UsersTap]:
    """Collect users.events and notifier.commands from their current end."""
    topics = [USERS_EVENTS, NOTIFIER_COMMANDS]
    await ensure_topics(users_settings, topics)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=users_settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        request_timeout_ms=10_000,
        fetch_max_wait_ms=50,
    )
    tap = UsersTap(consumer, users_engine)
    try:
        await asyncio.wait_for(tap.start(topics), 30)
        yield tap
    finally:
        await tap.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def users_app(users_settings: UsersSettings, users_tap: UsersTap) -> AsyncIterator[FastAPI]:
    """The running app; its lifespan spans the session (the tap starts first)."""
    app = create_app(users_settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest_asyncio.fixture(loop_scope="session")
async def users_client(users_app: FastAPI) -> AsyncIterator[ClientFactory]:
    """Make clients of the app, each from its own client address (closed after the test)."""
    clients: list[httpx.AsyncClient] = []

    def make(address: str | None = None) -> httpx.AsyncClient:
        n = next(_addresses)
        ip = address or f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"
        transport = httpx.ASGITransport(app=users_app, client=(ip, 40000))
        client = httpx.AsyncClient(transport=transport, base_url="http://users.test", timeout=30)
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.aclose()
