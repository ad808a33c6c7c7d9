"""Test helpers: read mail through the Mailpit API (the embedded sink or Mailpit itself)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from agora_contract import Envelope, Event, FieldChange, UserUpdated
from aiokafka import AIOKafkaProducer

from agora_notifier.config import NotifierSettings


@dataclass(frozen=True, slots=True)
class Mail:
    """One received email as the mail API shows it."""

    id: str
    message_id: str
    to: list[str]
    subject: str
    text: str
    html: str
    headers: dict[str, list[str]]
    summary: dict[str, Any]


class MailApi:
    """A client of the Mailpit-compatible API (INTERFACES.md §7)."""

    def __init__(self, api_url: str, *, timeout_s: float = 10.0) -> None:
        self._http = httpx.AsyncClient(base_url=api_url, timeout=timeout_s)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    async def search(self, query: str) -> list[dict[str, Any]]:
        """Return the summaries of the messages matching a Mailpit search."""
        response = await self._http.get("/api/v1/search", params={"query": query, "limit": 500})
        response.raise_for_status()
        messages: list[dict[str, Any]] = response.json()["messages"]
        return messages

    async def to(self, address: str) -> list[dict[str, Any]]:
        """Return the summaries of the messages whose To, Cc or Bcc *address* is ``address``.

        Mailpit's ``addressed:`` also matches display names; the exact check keeps a name
        that merely mentions an address from counting as mail to it.
        """
        wanted = address.lower()
        return [
            m
            for m in await self.search(f"addressed:{address}")
            if any(
                a["Address"].lower() == wanted for f in ("To", "Cc", "Bcc") for a in m.get(f) or []
            )
        ]

    async def get(self, message_id: str) -> Mail:
        """Return one message with its parts and headers."""
        detail = (await self._http.get(f"/api/v1/message/{message_id}")).raise_for_status().json()
        headers = (
            (await self._http.get(f"/api/v1/message/{message_id}/headers"))
            .raise_for_status()
            .json()
        )
        return Mail(
            id=detail["ID"],
            message_id=detail["MessageID"],
            to=[a["Address"] for a in detail["To"]],
            subject=detail["Subject"],
            text=detail["Text"],
            html=detail["HTML"],
            headers=headers,
            summary=detail,
        )

    async def wait_for(
        self, address: str, *, count: int = 1, timeout_s: float = 30.0
    ) -> list[Mail]:
        """Poll until ``address`` has at least ``count`` messages; return them, oldest first."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            found = await self.to(address)
            if len(found) >= count:
                return [await self.get(m["ID"]) for m in reversed(found)]
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f"{address} got {len(found)} message(s) within {timeout_s}s, wanted {count}"
                )
            await asyncio.sleep(0.2)

    async def set_chaos(self, body: dict[str, Any]) -> dict[str, Any]:
        """Replace the SMTP fault triggers (an empty body turns them all off); return them."""
        (await self._http.put("/api/v1/chaos", json=body)).raise_for_status()
        shown: dict[str, Any] = (await self._http.get("/api/v1/chaos")).raise_for_status().json()
        return shown

    @asynccontextmanager
    async def chaos(
        self, trigger: str, code: int, *, addresses: Sequence[str] = ()
    ) -> AsyncIterator[None]:
        """Make every ``trigger`` (Sender, Recipient) command fail with ``code`` inside.

        ``addresses`` scopes the fault to those MAIL FROM / RCPT TO addresses through the
        embedded sink's ``Addresses`` extension, which Mailpit lacks: when the server does
        not show them back, the fault is cleared and ``ChaosUnsupportedError`` raised (skip then).
        The triggers are always switched off on the way out.
        """
        body: dict[str, Any] = {"ErrorCode": code, "Probability": 100}
        if addresses:
            body["Addresses"] = list(addresses)
        try:
            shown = await self.set_chaos({trigger: body})
            scoped = {str(a).lower() for a in (shown.get(trigger) or {}).get("Addresses") or []}
            if scoped != {a.lower() for a in addresses}:
                raise ChaosUnsupportedError(
                    f"the mail server ignores Addresses on {trigger} (Mailpit?); shows {shown}"
                )
            yield
        finally:
            await self.set_chaos({})


class ChaosUnsupportedError(RuntimeError):
    """The mail server cannot scope a fault to some addresses (Mailpit rather than the sink)."""


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
