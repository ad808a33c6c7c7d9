"""Fixtures of the users suite: one migrated database, one running app, a tap on its topics.

The app runs once per test session against the embedded Postgres, Redis and broker. Tests
stay independent by using fresh email addresses, fresh client addresses (the throttles
count per client) and fresh ``X-Request-ID``s (messages are matched on ``correlationid``).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from agora_contract.topics import NOTIFIER_COMMANDS, USERS_EVENTS
from agora_kit.kafka import ensure_topics
from agora_kit.settings import Environment
from agora_kit.testing.app import ServiceFactory
from agora_users.config import UsersSettings
from agora_users.main import create_app
from agora_users.testing import PROJECT_DIR, ClientFactory, UsersTap
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

_addresses = itertools.count(1)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def users_database(service_factory: ServiceFactory) -> str:
    """A fresh database migrated with the service's Alembic chain."""
    return await service_factory.database("users_test", PROJECT_DIR)


@pytest.fixture(scope="session")
def users_keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The suite's key folder (the app creates the first key, as in development)."""
    return tmp_path_factory.mktemp("users-keys") / "keys"


@pytest.fixture(scope="session")
def users_settings(
    service_factory: ServiceFactory, users_database: str, users_keys_dir: Path
) -> UsersSettings:
    """Settings of the suite's app (development: keys are generated in the key folder)."""
    return service_factory.settings(
        UsersSettings,
        users_database,
        env=Environment.DEVELOPMENT,
        keys_dir=users_keys_dir,
        key_reload_interval_s=0.2,
        shutdown_timeout_s=5.0,
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
    service_factory: ServiceFactory, users_settings: UsersSettings, users_engine: AsyncEngine
) -> AsyncIterator[UsersTap]:
    """Collect users.events and notifier.commands from their current end."""
    topics = [USERS_EVENTS, NOTIFIER_COMMANDS]
    await ensure_topics(users_settings, topics)
    async with UsersTap(service_factory.tap_consumer(), users_engine).running(topics) as tap:
        yield tap


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
