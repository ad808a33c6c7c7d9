"""The chaos load: registrations and item listings through the gateway, retried like a client."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.parse
from collections import Counter

import httpx

from agora_deploy.chaos.stackctl import Stack

PASSWORD = "chaos-Passw0rd-long-enough"  # noqa: S105 - a throwaway test account


RETRYABLE = {429, 502, 503, 504}


_TOKEN = re.compile(r"verify-email\?token=([^\s\"'<>&]+)")


async def _verification_token(mail: httpx.AsyncClient, api: str, email: str) -> str | None:
    """The token of the verification link mailed to ``email``, once it has arrived."""
    try:
        found = await mail.get(f"{api}/api/v1/search", params={"query": f"to:{email}"})
        found.raise_for_status()
        for summary in found.json()["messages"]:
            if "confirm your email" not in str(summary["Subject"]).lower():
                continue
            body = await mail.get(f"{api}/api/v1/message/{summary['ID']}")
            match = _TOKEN.search(str(body.json()["Text"]))
            if match:
                return urllib.parse.unquote(match.group(1))
    except (httpx.HTTPError, ValueError, KeyError):
        return None  # the sink is restarting: ask again
    return None


def account(index: int, tag: str) -> str:
    """The address of the load's ``index``-th account in a scenario."""
    return f"u{index}.{tag}@chaos.example"


def _title(resp: httpx.Response) -> str:
    """The problem title of an error response (its first bytes when it is not JSON)."""
    try:
        return str(resp.json().get("title", ""))
    except ValueError:
        return resp.text[:60]


def _retryable(resp: httpx.Response) -> bool:
    """What a well-behaved client retries: 429/502/503/504, and 409 with Retry-After."""
    if resp.status_code == 409:
        # An Idempotency-Key still in flight (the first attempt's process may have died).
        return "Retry-After" in resp.headers
    if resp.status_code == 404 and resp.text.strip() == "404 page not found":
        # Traefik's own answer while it loads its routes just after a start: every API
        # 404 of Agora is a problem+json body.
        return True
    return resp.status_code in RETRYABLE


class Load:
    """Registrations (and some item listings) through the gateway, retried as a client would."""

    def __init__(self, stack: Stack, tag: str, *, retry_budget_s: float = 120.0) -> None:
        self.stack = stack
        self.tag = tag
        self.retry_budget_s = retry_budget_s
        self.failed = 0
        self.sent = 0
        self.errors: Counter[str] = Counter()

    async def _request(
        self, client: httpx.AsyncClient, method: str, path: str, **kwargs: object
    ) -> httpx.Response | None:
        deadline = time.monotonic() + self.retry_budget_s
        while True:
            try:
                resp = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
            except httpx.HTTPError as exc:
                self.errors[type(exc).__name__] += 1
                resp = None
            if resp is not None and not _retryable(resp):
                return resp
            if resp is not None:
                self.errors[str(resp.status_code)] += 1
            if time.monotonic() > deadline:
                return None
            wait = 0.5
            if resp is not None and resp.headers.get("Retry-After", "").isdigit():
                wait = min(float(resp.headers["Retry-After"]), 5.0)
            await asyncio.sleep(wait)

    async def register(self, client: httpx.AsyncClient, index: int, *, with_item: bool) -> None:
        """One account (Idempotency-Key makes the retries safe), maybe one item."""
        email = account(index, self.tag)
        key = f"{self.tag}-{index}"
        self.sent += 1
        resp = await self._request(
            client,
            "POST",
            "/api/v1/users",
            json={"email": email, "password": PASSWORD, "name": f"Chaos {index}"},
            headers={"Idempotency-Key": key},
        )
        if resp is None or resp.status_code not in (201, 409):
            self.failed += 1
            detail = "gave up" if resp is None else f"{resp.status_code} {_title(resp)}"
            self.errors[f"register: {detail}"] += 1
            return
        if not with_item:
            return
        # Item mail goes to verified addresses only: follow the link, as the owner would.
        if not await self.verify(client, email):
            self.failed += 1
            return
        token = await self._request(
            client,
            "POST",
            "/api/v1/auth/token",
            data={"username": email, "password": PASSWORD, "grant_type": "password"},
        )
        if token is None or token.status_code != 200:
            self.failed += 1
            self.errors[f"login: {'gave up' if token is None else token.status_code}"] += 1
            return
        bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
        item = await self._request(
            client,
            "POST",
            "/api/v1/items",
            json={"name": f"chaos item {self.tag} {index}", "price": "9.99"},
            headers={**bearer, "Idempotency-Key": f"{key}-item"},
        )
        if item is None or item.status_code != 201:
            self.failed += 1
            self.errors[f"item: {'gave up' if item is None else item.status_code}"] += 1

    async def verify(self, client: httpx.AsyncClient, email: str) -> bool:
        """Wait for the verification email in the sink and post its token."""
        deadline = time.monotonic() + self.retry_budget_s
        async with httpx.AsyncClient(timeout=10) as mail:
            while time.monotonic() < deadline:
                mail_api = self.stack.url_of("mail")  # it moves on `agora down`/`up`
                link = await _verification_token(mail, mail_api, email) if mail_api else None
                if link is not None:
                    resp = await self._request(
                        client, "POST", "/api/v1/auth/verify-email", json={"token": link}
                    )
                    if resp is not None and resp.status_code in (200, 204):
                        return True
                    self.errors[f"verify: {'gave up' if resp is None else resp.status_code}"] += 1
                    return False
                await asyncio.sleep(0.5)
        self.errors["verify: no verification email"] += 1
        return False

    async def run(self, count: int, rate: float, *, item_every: int = 0) -> None:
        """``count`` registrations at ``rate`` per second (open loop), all awaited."""
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(
            base_url=self.stack.gateway, timeout=10, limits=limits
        ) as client:
            tasks = []
            start = time.monotonic()
            for i in range(count):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                with_item = item_every > 0 and i % item_every == 0
                tasks.append(asyncio.create_task(self.register(client, i, with_item=with_item)))
            await asyncio.gather(*tasks)
