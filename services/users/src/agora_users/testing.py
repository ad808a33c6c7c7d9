"""Test support for the users service and suites that run it: tap topics, clients.

Imported by tests only; nothing here runs in the service.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from agora_contract import Envelope
from agora_kit.testing.events import EventTap
from agora_kit.testing.poll import eventually
from aiokafka import AIOKafkaConsumer
from sqlalchemy.ext.asyncio import AsyncEngine

from agora_users.models import OUTBOX

PROJECT_DIR = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"  # noqa: S105 - the test accounts' password

#: Makes an httpx client of the app from a given (or fresh) client address.
ClientFactory = Callable[..., httpx.AsyncClient]


class UsersTap(EventTap):
    """The kit's event tap plus what the users suite asks of it: by request id, outbox drained."""

    def __init__(self, consumer: AIOKafkaConsumer, engine: AsyncEngine) -> None:
        super().__init__(consumer)
        self.engine = engine

    @property
    def messages(self) -> list[tuple[str, bytes | None, Envelope]]:
        """(topic, key, envelope) of every message, in arrival order."""
        return [(r.topic, r.key, r.envelope) for r in self.records]

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
        await self.wait(
            lambda r: r.envelope.correlationid == request_id,
            count,
            timeout_s=timeout_s,
            what=f"message(s) of {request_id}",
        )
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
        await self.read_to_end(timeout_s=timeout_s)


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
