"""Run an app's lifespan and talk to it in-process with httpx (for services' tests).

:class:`ServiceFactory` builds the ladder every service suite climbs, on the session's
backing services: a migrated database, the app's settings, a producer, a tap's consumer and
the running app with a client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fastapi import FastAPI

from agora_kit.consumer import ConsumerLoop
from agora_kit.settings import Environment, ServiceSettings
from agora_kit.testing.db import migrate
from agora_kit.testing.poll import eventually

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)

#: How long a running app's consumers may take to own their partitions (a group join takes
#: ~5 s on the embedded broker, more under load).
JOIN_TIMEOUT_S = 60.0


@asynccontextmanager
async def app_client(
    app: FastAPI, *, client: tuple[str, int] = ("127.0.0.1", 50000), base_url: str = "http://test"
) -> AsyncIterator[httpx.AsyncClient]:
    """Start the app's lifespan, yield a client bound to it, then shut the app down."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url=base_url, timeout=30) as http:
            yield http


@dataclass(frozen=True)
class ServiceFactory:
    """A service suite's database, settings, Kafka clients and running app, on shared services."""

    #: Creates a fresh database named after a prefix and returns its asyncpg URL.
    create_database: Callable[[str], str]
    redis_url: str
    kafka_bootstrap: str

    async def database(self, prefix: str, project_dir: Path) -> str:
        """Create a fresh database, migrate it with the service's Alembic chain, return its URL."""
        url = self.create_database(prefix)
        await migrate(url, project_dir)
        return url

    def settings(self, cls: type[SettingsT], database_url: str, **overrides: Any) -> SettingsT:
        """Return ``cls`` settings on these services: test env, quiet logs, a quick relay."""
        values: dict[str, Any] = {
            "env": Environment.TEST,
            "database_url": database_url,
            "redis_url": self.redis_url,
            "kafka_bootstrap_servers": self.kafka_bootstrap,
            # The embedded broker rejects idempotent producers (InitProducerId fails).
            "kafka_enable_idempotence": False,
            "log_json": False,
            "log_level": "WARNING",
            "relay_poll_interval_s": 0.2,
        }
        return cls(**{**values, **overrides})

    @asynccontextmanager
    async def producer(self) -> AsyncIterator[AIOKafkaProducer]:
        """Yield a started producer for publishing test messages (stopped afterwards)."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self.kafka_bootstrap,
            enable_idempotence=False,
            acks="all",
            request_timeout_ms=10_000,
        )
        await asyncio.wait_for(producer.start(), 30)
        try:
            yield producer
        finally:
            await asyncio.wait_for(producer.stop(), 30)

    def tap_consumer(self) -> AIOKafkaConsumer:
        """Return an unstarted consumer for an ``EventTap`` (no group, quick fetches)."""
        return AIOKafkaConsumer(
            bootstrap_servers=self.kafka_bootstrap,
            enable_auto_commit=False,
            request_timeout_ms=10_000,
            fetch_max_wait_ms=50,
        )

    @asynccontextmanager
    async def running(
        self, app: FastAPI, *, join_timeout_s: float = JOIN_TIMEOUT_S
    ) -> AsyncIterator[httpx.AsyncClient]:
        """Run the app, wait until its consumers own partitions, and yield a client bound to it."""
        async with app_client(app) as client:
            # Joined before the first test: tests are then timed by their handlers alone, and
            # shutdown never interrupts a join (which would leak its connections).
            loops = [c for c in app.state.ctx.runtime.components if isinstance(c, ConsumerLoop)]
            await eventually(
                lambda: all(loop.assignment for loop in loops),
                timeout_s=join_timeout_s,
                what="the app's consumers own partitions",
            )
            yield client
