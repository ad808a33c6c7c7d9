"""The bench's accounts and items: register and verify a user, create items, wait for drains."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import httpx
from agora_deploy.observe import service_gauges
from agora_kit.testing.mail import MailClient


@dataclass(frozen=True)
class Account:
    """A registered user with a bearer token."""

    user_id: int
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header."""
        return {"Authorization": f"Bearer {self.token}"}


_TOKEN_LINK = re.compile(r"[?&]token=([^\s&\"'<>]+)")


def verification_token(mail_api: str, email: str) -> str:
    """The token of the verification link mailed to ``email``."""
    with MailClient(mail_api) as mail:
        message = mail.wait_subject(email, "confirm your email", timeout_s=60)
        text = str(mail.message(str(message["ID"]))["Text"])
    found = _TOKEN_LINK.search(text)
    if found is None:
        raise RuntimeError(f"the verification email to {email} carries no token link")
    return unquote(found.group(1))


async def register(users: httpx.AsyncClient, mail_api: str, label: str) -> Account:
    """Register a user, verify its address with the mailed token, and log in.

    Verified, because the notifier retries item mail to an unverified owner (the verification
    may not be projected yet): thousands of bench items would become thousands of retries
    running in the background of every later measurement.
    """
    email = f"bench-{label}-{uuid.uuid4().hex[:10]}@example.com"
    password = f"bench-{uuid.uuid4().hex}"
    resp = await users.post(
        "/api/v1/users", json={"email": email, "name": "Bench", "password": password}
    )
    resp.raise_for_status()
    user_id = int(resp.json()["id"])
    token = await asyncio.to_thread(verification_token, mail_api, email)
    resp = await users.post("/api/v1/auth/verify-email", json={"token": token})
    resp.raise_for_status()
    resp = await users.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": email, "password": password},
    )
    resp.raise_for_status()
    return Account(user_id, email, str(resp.json()["access_token"]))


def item_body(name: str) -> dict[str, Any]:
    """A small, valid ``ItemCreate`` body (the bare app takes the same)."""
    return {"name": name, "price": "19.90", "tags": ["bench"], "description": "a bench item"}


async def create_item(client: httpx.AsyncClient, path: str, name: str, **kw: Any) -> int:
    """Create one item; return its id."""
    resp = await client.post(path, json=item_body(name), **kw)
    resp.raise_for_status()
    return int(resp.json()["id"])


async def wait_drained(items_url: str, notifier_url: str, *, timeout: float = 120.0) -> float:
    """Wait until the items outbox is published and the notifier has caught up; return secs."""
    start = time.monotonic()
    outbox: dict[str, str] = {}
    lag: dict[str, str] = {}
    while time.monotonic() - start < timeout:
        outbox, lag = await asyncio.gather(
            asyncio.to_thread(service_gauges, items_url),
            asyncio.to_thread(service_gauges, notifier_url),
        )
        if outbox.get("outbox_backlog") == "0" and lag.get("consumer_lag", "0") == "0":
            return time.monotonic() - start
        await asyncio.sleep(0.25)
    raise RuntimeError(f"backlog not drained within {timeout}s: items {outbox}, notifier {lag}")
