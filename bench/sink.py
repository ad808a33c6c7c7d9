"""Reading the mail sink without loading it: a cheap count first, one listing when due.

Mailpit lists messages from its own database; listing every message twice a second while
the notifier is sending took about half a core from the stack under measurement. So the
readers here poll the sink's total (a one-message page) and list only the newest messages,
only when the total says enough may have arrived, or every few seconds as a fallback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

#: Between cheap polls of the sink's total.
POLL_S = 0.25
#: The longest the sink goes unlisted while its total moves.
LIST_EVERY_S = 3.0


async def _total(mail: httpx.AsyncClient) -> int:
    resp = await mail.get("/api/v1/messages", params={"limit": 1})
    resp.raise_for_status()
    return int(resp.json()["total"])


def stamp(message: dict[str, Any]) -> float:
    """When the sink received ``message`` (epoch seconds, millisecond resolution)."""
    return datetime.fromisoformat(str(message["Created"]).replace("Z", "+00:00")).timestamp()


def sent_to(message: dict[str, Any], address: str) -> bool:
    """Whether ``address`` is among the message's recipients."""
    people = [str(p.get("Address", "")).lower() for p in message.get("To") or []]
    return address.lower() in people


async def collect(
    mail: httpx.AsyncClient,
    take: Callable[[list[dict[str, Any]]], int],
    want: int,
    *,
    timeout: float,
) -> None:
    """List the newest messages until ``take`` (fed each listing, newest first) says it has
    ``want`` of them, or ``timeout`` passes. Lists ``2 * want`` at most: nothing else mails
    during a measurement."""
    deadline = time.monotonic() + timeout
    listed_total, listed_at, have = -1, 0.0, 0
    while time.monotonic() < deadline:
        total = await _total(mail)
        due = total != listed_total and (
            total - max(listed_total, 0) >= want - have
            or time.monotonic() - listed_at >= LIST_EVERY_S
        )
        if due:
            resp = await mail.get("/api/v1/messages", params={"limit": max(2 * want, 50)})
            resp.raise_for_status()
            listed_total, listed_at = total, time.monotonic()
            have = take(resp.json()["messages"])
            if have >= want:
                return
        await asyncio.sleep(POLL_S)
