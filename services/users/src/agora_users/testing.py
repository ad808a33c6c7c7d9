"""Test support for the users service and suites that run it: tap topics, clients.

Imported by tests only; nothing here runs in the service.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from agora_contract import Envelope
from agora_kit.testing.poll import eventually
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy.ext.asyncio import AsyncEngine

from agora_users.models import OUTBOX

PROJECT_DIR = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"  # noqa: S105 - the test accounts' password

#: Makes an httpx client of the app from a given (or fresh) client address.
ClientFactory = Callable[..., httpx.AsyncClient]


class EventTap:
    """Collects every message of some topics from where they ended when the tap started."""

    def __init__(self, consumer: AIOKafkaConsumer, engine: AsyncEngine) -> None:
        self.consumer = consumer
        self.engine = engine
        #: (topic, key, envelope) in arrival order.
        self.messages: list[tuple[str, bytes | None, Envelope]] = []
        self._positions: dict[TopicPartition, int] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self, topics: Sequence[str]) -> None:
        """Assign every partition of ``topics`` (no group join), seek to the end, collect."""
        await self.consumer.start()
        partitions: list[TopicPartition] = []
        for topic in topics:
            ids = self.consumer.partitions_for_topic(topic)
            if not ids:
                await self.consumer._client.force_metadata_update()
                ids = self.consumer.partitions_for_topic(topic) or set()
            partitions += [TopicPartition(topic, p) for p in sorted(ids)]
        self.consumer.assign(partitions)
        await self.consumer.seek_to_end(*partitions)
        for tp in partitions:
            self._positions[tp] = await self.consumer.position(tp)
        self._task = asyncio.create_task(self._run(), name="users-event-tap")

    async def stop(self) -> None:
        """Stop collecting and close the consumer."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=5)
        await asyncio.wait_for(self.consumer.stop(), 10)

    async def _run(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=100)
            for tp, records in batches.items():
                for record in records:
                    envelope = Envelope.from_bytes(record.value)
                    self.messages.append((record.topic, record.key, envelope))
                    self._positions[tp] = record.offset + 1

    def caused_by(
        self, request_id: str, topic: str | None = None
    ) -> list[tuple[str, bytes | None, Envelope]]:
        """Return the (topic, key, envelope) messages whose ``correlationid`` is ``request_id``."""
        return [
            m for m in self.messages if m[2].correlationid == request_id and topic in (None, m[0])
        ]

    async def wait_for(
        self, request_id: str, count: int, *, timeout_s: float = 20.0
    ) -> list[tuple[str, bytes | None, Envelope]]:
        """Wait until at least ``count`` messages of the request arrived; return them."""

        async def arrived() -> bool:
            return len(self.caused_by(request_id)) >= count

        await eventually(arrived, timeout_s=timeout_s, what=f"{count} message(s) of {request_id}")
        return self.caused_by(request_id)

    async def settle(self, *, timeout_s: float = 20.0) -> None:
        """Wait until the outbox is fully published and the tap has read every partition's end.

        After this, the tap holds every message published so far: counts are exact.
        """

        async def published() -> bool:
            async with self.engine.connect() as conn:
                pending = await conn.scalar(
                    sa.select(sa.func.count())
                    .select_from(OUTBOX)
                    .where(OUTBOX.c.published_at.is_(None))
                )
            return pending == 0

        await eventually(published, timeout_s=timeout_s, what="outbox published")
        ends = await self.consumer.end_offsets(list(self._positions))

        async def read_all() -> bool:
            return all(self._positions[tp] >= end for tp, end in ends.items())

        await eventually(read_all, timeout_s=timeout_s, what="topics read to their end")


def new_email() -> str:
    """Return a fresh address."""
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


def new_request_id() -> str:
    """Return a fresh ``X-Request-ID``."""
    return uuid.uuid4().hex


def bearer(token: str) -> dict[str, str]:
    """Return the Authorization header for an access token."""
    return {"Authorization": f"Bearer {token}"}


async def register(
    client: httpx.AsyncClient,
    *,
    email: str | None = None,
    name: str = "Ada Lovelace",
    password: str = PASSWORD,
) -> tuple[dict[str, Any], str]:
    """Register an account; return its view and the request id used."""
    request_id = new_request_id()
    response = await client.post(
        "/api/v1/users",
        json={"email": email or new_email(), "name": name, "password": password},
        headers={"X-Request-ID": request_id},
    )
    if response.status_code != 201:
        raise AssertionError(f"registration failed: {response.status_code} {response.text}")
    body: dict[str, Any] = response.json()
    return body, request_id


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    """Call the password grant."""
    return await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": email, "password": password},
    )


async def tokens(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    """Log in and return the token response (fails unless 200)."""
    response = await login(client, email, password)
    if response.status_code != 200:
        raise AssertionError(f"login failed: {response.status_code} {response.text}")
    body: dict[str, Any] = response.json()
    return body
