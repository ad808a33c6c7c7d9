"""Helpers for the items service's own tests (no pytest import): a harness over a running app.

Not used by the service itself; kept in the package so the suite's fixtures and tests share
typed helpers (test folders are not packages).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from agora_contract import Envelope, Event
from agora_contract.topics import ITEMS_SOURCE
from agora_kit.consumer import ConsumerLoop
from agora_kit.testing.events import EventTap
from agora_kit.testing.jwt import JwtKeyring
from agora_kit.testing.poll import eventually
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from agora_items.config import ItemsSettings

_ids = itertools.count(random.randrange(10**9, 2 * 10**9) * 1000)  # noqa: S311 - test ids


def new_user_id() -> int:
    """Return a user id no other test of this process uses (random start: shared databases)."""
    return next(_ids)


class ItemsTap(EventTap):
    """The kit's event tap plus what the items suite asks of it: the envelopes of one item."""

    @property
    def seen(self) -> list[tuple[bytes | None, Envelope]]:
        """(key, envelope) of every message, in arrival order."""
        return [(r.key, r.envelope) for r in self.records]

    @property
    def headers(self) -> dict[str, list[tuple[str, bytes]]]:
        """The Kafka headers of each message, by envelope id."""
        return {str(r.envelope.id): list(r.headers) for r in self.records}

    def for_item(self, item_id: int) -> list[Envelope]:
        """Envelopes the items service published about ``item_id``, in topic order."""
        return [
            envelope
            for _key, envelope in self.seen
            if envelope.source == ITEMS_SOURCE and envelope.subject == str(item_id)
        ]

    def keys_for(self, item_id: int) -> list[bytes | None]:
        """The Kafka keys of the messages about ``item_id``."""
        return [key for key, envelope in self.seen if envelope.subject == str(item_id)]

    async def wait_for_item(
        self, item_id: int, count: int, *, timeout_s: float = 30.0
    ) -> list[Envelope]:
        """Wait until at least ``count`` envelopes about ``item_id`` arrived; return them all."""
        await eventually(lambda: len(self.for_item(item_id)) >= count, timeout_s=timeout_s)
        return self.for_item(item_id)


@dataclass
class ItemsHarness:
    """What the tests drive: the in-process client, signing keys, the event tap, a producer."""

    app: FastAPI
    client: httpx.AsyncClient
    keyring: JwtKeyring
    settings: ItemsSettings
    tap: ItemsTap
    producer: AIOKafkaProducer
    engine: AsyncEngine

    @staticmethod
    def new_user() -> int:
        """Return a fresh user id."""
        return new_user_id()

    def auth(self, user_id: int, **headers: str) -> dict[str, str]:
        """Headers with a valid access token for ``user_id`` and a fresh request id."""
        return {
            "Authorization": f"Bearer {self.keyring.token(user_id)}",
            "X-Request-ID": uuid.uuid4().hex,
            **headers,
        }

    async def create(self, user_id: int, **body: Any) -> dict[str, Any]:
        """Create an item as ``user_id`` (201 expected) and return its body."""
        payload = {"name": "Walnut desk", "price": "120.00", **body}
        response = await self.client.post("/api/v1/items", json=payload, headers=self.auth(user_id))
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def publish_user_event(
        self, event: Event, *, aggregateversion: int | None, envelope_id: uuid.UUID | None = None
    ) -> Envelope:
        """Publish a users-service event on the suite's users topic, as the users relay would."""
        envelope = Envelope.wrap(event, id=envelope_id, aggregateversion=aggregateversion)
        await self.publish_envelope(envelope)
        return envelope

    async def publish_envelope(self, envelope: Envelope) -> None:
        """Publish ``envelope`` (key = subject) and wait for the broker's ack."""
        await asyncio.wait_for(
            self.producer.send_and_wait(
                self.settings.users_topic,
                envelope.to_bytes(),
                key=envelope.kafka_key(),
                headers=envelope.kafka_headers(),
            ),
            timeout=15,
        )

    @property
    def consumer(self) -> ConsumerLoop:
        """The app's users-projection consumer."""
        loop = self.app.state.ctx.runtime.consumer
        assert isinstance(loop, ConsumerLoop)
        return loop
