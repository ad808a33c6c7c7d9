"""Test helpers: read mail through the Mailpit API (the embedded sink or Mailpit itself)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx


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
        """Return the summaries of the messages addressed (To, Cc or Bcc) to ``address``."""
        return await self.search(f"addressed:{address}")

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

    async def set_chaos(self, body: dict[str, Any]) -> None:
        """Replace the SMTP fault triggers (an empty body turns them all off)."""
        (await self._http.put("/api/v1/chaos", json=body)).raise_for_status()

    @asynccontextmanager
    async def chaos(self, trigger: str, code: int) -> AsyncIterator[None]:
        """Make every ``trigger`` (Sender, Recipient) command fail with ``code`` inside."""
        await self.set_chaos({trigger: {"ErrorCode": code, "Probability": 100}})
        try:
            yield
        finally:
            await self.set_chaos({})
