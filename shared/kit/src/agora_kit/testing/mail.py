"""The one client of Mailpit's HTTP API (the embedded sink serves the same; docs/interfaces.md).

``MailApi`` is async; ``MailClient`` is its blocking face for synchronous code (the end-to-end
tests, ``agora demo``). No pytest import: tools outside a test run use it too.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from agora_kit.testing.poll import DEFAULT_TIMEOUT_S, eventually

T = TypeVar("T")
#: A message summary or detail as the API returns it.
Message = dict[str, Any]


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


class ChaosUnsupportedError(RuntimeError):
    """The mail server cannot scope a fault to some addresses (Mailpit rather than the sink)."""


def addressed_to(summary: Message, address: str) -> bool:
    """Whether ``address`` is exactly one of the message's To, Cc or Bcc addresses."""
    wanted = address.lower()
    people = [p for key in ("To", "Cc", "Bcc") for p in summary.get(key) or []]
    return any(str(p.get("Address", "")).lower() == wanted for p in people)


class MailApi:
    """Read, wait for and clear the messages of a Mailpit-compatible mail box."""

    def __init__(self, api_url: str, *, timeout_s: float = 10.0) -> None:
        self._http = httpx.AsyncClient(base_url=api_url.rstrip("/"), timeout=timeout_s)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._http.request(method, path, **kwargs)
        return response.raise_for_status().json()

    async def summaries(self, limit: int = 500) -> list[Message]:
        """The newest ``limit`` message summaries (newest first)."""
        body = await self._json("GET", "/api/v1/messages", params={"limit": limit})
        return list(body["messages"])

    async def search(self, query: str) -> list[Message]:
        """The summaries of the messages matching a Mailpit search (newest first)."""
        body = await self._json("GET", "/api/v1/search", params={"query": query, "limit": 500})
        return list(body["messages"])

    async def to(self, address: str) -> list[Message]:
        """The summaries of the messages whose To, Cc or Bcc address is ``address``.

        Mailpit's ``addressed:`` also matches display names; the exact check keeps a name
        that merely mentions an address from counting as mail to it.
        """
        return [m for m in await self.search(f"addressed:{address}") if addressed_to(m, address)]

    async def message(self, message_id: str) -> Message:
        """One full message: its summary fields, ``Text`` and ``HTML``."""
        return dict(await self._json("GET", f"/api/v1/message/{message_id}"))

    async def headers(self, message_id: str) -> dict[str, list[str]]:
        """Every header of one message."""
        return dict(await self._json("GET", f"/api/v1/message/{message_id}/headers"))

    async def raw(self, message_id: str) -> bytes:
        """The message exactly as the sink received it."""
        response = await self._http.get(f"/api/v1/message/{message_id}/raw")
        return response.raise_for_status().content

    async def get(self, message_id: str) -> Mail:
        """One message with its parts and headers."""
        detail = await self.message(message_id)
        return Mail(
            id=detail["ID"],
            message_id=detail["MessageID"],
            to=[a["Address"] for a in detail["To"]],
            subject=detail["Subject"],
            text=detail["Text"],
            html=detail["HTML"],
            headers=await self.headers(message_id),
            summary=detail,
        )

    async def wait(
        self,
        predicate: Callable[[list[Message]], bool],
        *,
        address: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> list[Message]:
        """Poll until ``predicate(summaries of the mail to address)`` holds; return them."""
        seen: list[Message] = []

        async def probe() -> bool:
            seen[:] = await self.to(address)
            return predicate(seen)

        try:
            await eventually(probe, timeout_s=timeout_s, interval_s=0.2)
            return list(seen)
        except AssertionError:
            subjects = [m.get("Subject") for m in seen]
            raise AssertionError(
                f"mail to {address} not as expected within {timeout_s:g}s: {subjects}"
            ) from None

    async def wait_for(
        self, address: str, *, count: int = 1, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> list[Mail]:
        """Wait until ``address`` has at least ``count`` messages; return them, oldest first."""
        found = await self.wait(lambda ms: len(ms) >= count, address=address, timeout_s=timeout_s)
        return [await self.get(m["ID"]) for m in reversed(found)]

    async def wait_subject(
        self, address: str, fragment: str, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> Message:
        """Wait for a message to ``address`` whose subject contains ``fragment``; return it."""
        frag = fragment.lower()

        def has(summary: Message) -> bool:
            return frag in str(summary.get("Subject", "")).lower()

        found = await self.wait(
            lambda ms: any(has(m) for m in ms), address=address, timeout_s=timeout_s
        )
        return await self.message(str(next(m for m in found if has(m))["ID"]))

    async def delete_all(self) -> None:
        """Empty the mail box."""
        (await self._http.delete("/api/v1/messages")).raise_for_status()

    async def set_chaos(self, body: dict[str, Any]) -> dict[str, Any]:
        """Replace the SMTP fault triggers (an empty body turns them all off); return them."""
        (await self._http.put("/api/v1/chaos", json=body)).raise_for_status()
        shown: dict[str, Any] = await self._json("GET", "/api/v1/chaos")
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


class MailClient:
    """``MailApi`` for synchronous code: each call runs on a private event-loop thread.

    Safe to call from a thread that runs an event loop of its own (a sync helper inside an
    async test), which ``asyncio.run`` would refuse.
    """

    def __init__(self, api_url: str, *, timeout_s: float = 10.0) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mail-client")
        self._thread.daemon = True
        self._thread.start()
        self.api = MailApi(api_url, timeout_s=timeout_s)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        # Every call is bounded by the HTTP timeout or by its own timeout_s.
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        """Close the HTTP connection pool and stop the loop thread."""
        try:
            self._run(self.api.aclose())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()

    def __enter__(self) -> MailClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def to(self, address: str) -> list[Message]:
        """See ``MailApi.to``."""
        return self._run(self.api.to(address))

    def message(self, message_id: str) -> Message:
        """See ``MailApi.message``."""
        return self._run(self.api.message(message_id))

    def raw(self, message_id: str) -> bytes:
        """See ``MailApi.raw``."""
        return self._run(self.api.raw(message_id))

    def wait(
        self,
        predicate: Callable[[list[Message]], bool],
        *,
        address: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> list[Message]:
        """See ``MailApi.wait``."""
        return self._run(self.api.wait(predicate, address=address, timeout_s=timeout_s))

    def wait_subject(
        self, address: str, fragment: str, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> Message:
        """See ``MailApi.wait_subject``."""
        return self._run(self.api.wait_subject(address, fragment, timeout_s=timeout_s))
