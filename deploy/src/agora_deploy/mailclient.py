"""A small client of Mailpit's HTTP API (the embedded sink serves the same one)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

Message = dict[str, Any]


class MailClient:
    """Read, wait for and clear the messages of a Mailpit-compatible mail box."""

    def __init__(self, api_url: str, *, timeout: float = 10.0) -> None:
        self._http = httpx.Client(base_url=api_url.rstrip("/"), timeout=timeout)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> MailClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def summaries(self, limit: int = 500) -> list[Message]:
        """The newest ``limit`` message summaries (newest first)."""
        resp = self._http.get("/api/v1/messages", params={"limit": limit})
        resp.raise_for_status()
        return list(resp.json()["messages"])

    def message(self, message_id: str) -> Message:
        """One full message: headers summary, Text and HTML."""
        resp = self._http.get(f"/api/v1/message/{message_id}")
        resp.raise_for_status()
        return dict(resp.json())

    def headers(self, message_id: str) -> dict[str, list[str]]:
        """Every header of one message."""
        resp = self._http.get(f"/api/v1/message/{message_id}/headers")
        resp.raise_for_status()
        return dict(resp.json())

    def raw(self, message_id: str) -> bytes:
        """The message exactly as the sink received it."""
        resp = self._http.get(f"/api/v1/message/{message_id}/raw")
        resp.raise_for_status()
        return resp.content

    def to(self, address: str) -> list[Message]:
        """Summaries of the messages delivered to ``address`` (header or envelope recipient)."""
        needle = address.lower()

        def hit(summary: Message) -> bool:
            people = [p for key in ("To", "Cc", "Bcc") for p in summary.get(key) or []]
            return any(str(p.get("Address", "")).lower() == needle for p in people)

        return [m for m in self.summaries() if hit(m)]

    def wait(
        self,
        predicate: Callable[[list[Message]], bool],
        *,
        address: str,
        timeout: float = 30.0,
    ) -> list[Message]:
        """Poll until ``predicate(messages to address)`` holds; return those messages."""
        deadline = time.monotonic() + timeout
        found: list[Message] = []
        while time.monotonic() < deadline:
            found = self.to(address)
            if predicate(found):
                return found
            time.sleep(0.25)
        subjects = [m.get("Subject") for m in found]
        raise AssertionError(f"mail to {address} not as expected after {timeout}s: {subjects}")

    def wait_subject(self, address: str, fragment: str, *, timeout: float = 30.0) -> Message:
        """Wait for a message to ``address`` whose subject contains ``fragment``; return it."""
        frag = fragment.lower()
        found = self.wait(
            lambda ms: any(frag in str(m.get("Subject", "")).lower() for m in ms),
            address=address,
            timeout=timeout,
        )
        summary = next(m for m in found if frag in str(m.get("Subject", "")).lower())
        return self.message(str(summary["ID"]))

    def set_chaos(self, trigger: str, *, error_code: int, probability: int = 100) -> None:
        """Make SMTP answer ``trigger`` (Sender, Recipient, Authentication) with a code."""
        resp = self._http.put(
            "/api/v1/chaos", json={trigger: {"ErrorCode": error_code, "Probability": probability}}
        )
        resp.raise_for_status()

    def clear_chaos(self) -> None:
        """Turn every fault trigger off."""
        for trigger in ("Sender", "Recipient", "Authentication"):
            self.set_chaos(trigger, error_code=0, probability=0)

    def delete_all(self) -> None:
        """Empty the mail box."""
        self._http.delete("/api/v1/messages").raise_for_status()
