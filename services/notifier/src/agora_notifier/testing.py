"""Test helpers: publish envelopes onto the suite's topics as the services' relays do."""

from __future__ import annotations

import asyncio
from typing import Any

from agora_contract import Envelope, Event, FieldChange, UserUpdated
from aiokafka import AIOKafkaProducer

from agora_notifier.config import NotifierSettings


class Publisher:
    """Publishes envelopes onto the suite's topics, the way the services' relays do."""

    def __init__(self, producer: AIOKafkaProducer, settings: NotifierSettings) -> None:
        """Publish with ``producer`` to the topics ``settings`` name."""
        self.producer = producer
        self.settings = settings

    def topic_for(self, event: Event) -> str:
        """The suite's topic standing in for the event's real topic."""
        mapping = {
            "users.events": self.settings.users_topic,
            "items.events": self.settings.items_topic,
            "notifier.commands": self.settings.commands_topic,
        }
        return mapping[event.topic]

    async def event(self, event: Event, **wrap: Any) -> Envelope:
        """Wrap ``event`` in a fresh envelope (or the given id) and publish it."""
        envelope = Envelope.wrap(event, **wrap)
        await self.envelope(envelope, self.topic_for(event))
        return envelope

    async def verified(self, user_id: int, *, aggregateversion: int | None = None) -> Envelope:
        """Publish that ``user_id`` verified its address (item mail and resets need that)."""
        changes = {"email_verified": FieldChange(old=False, new=True)}
        return await self.event(
            UserUpdated(user_id=user_id, changes=changes), aggregateversion=aggregateversion
        )

    async def envelope(self, envelope: Envelope, topic: str) -> None:
        """Publish an envelope as is (also a replayed one, with its id)."""
        await self.raw(topic, envelope.kafka_key(), envelope.to_bytes(), envelope.kafka_headers())

    async def raw(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Publish any bytes (poison messages)."""
        await asyncio.wait_for(
            self.producer.send_and_wait(topic, value=value, key=key, headers=headers or []), 30
        )
