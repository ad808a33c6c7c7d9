"""``agora demo``: a scripted scenario through the gateway, showing the emails as they arrive."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx
from agora_kit.testing.mail import MailClient

TOKEN_IN_LINK = re.compile(r"[?&]token=([^\s&\"'<>]+)")


class DemoError(RuntimeError):
    """A step of the demo did not go as expected."""


@dataclass
class Demo:
    """Runs the scenario against a gateway and a mail API, reporting through ``say``."""

    gateway_url: str
    mail_api_url: str
    say: Callable[[str], None]
    mail_timeout_s: float = 30.0
    seen: set[str] = field(default_factory=set)

    def _check(self, resp: httpx.Response, expected: int, what: str) -> dict[str, Any]:
        if resp.status_code != expected:
            raise DemoError(f"{what}: HTTP {resp.status_code} (wanted {expected}): {resp.text}")
        self.say(f"  {resp.request.method} {resp.request.url.path} -> {resp.status_code}")
        return dict(resp.json()) if resp.content else {}

    def _mail(self, mail: MailClient, address: str, fragment: str) -> dict[str, Any]:
        message = mail.wait_subject(address, fragment, timeout_s=self.mail_timeout_s)
        if message["ID"] not in self.seen:
            self.seen.add(message["ID"])
            self.say(f"  mail to {address}: {message['Subject']!r}")
        return message

    def run(self) -> None:
        """Register, verify, log in, list an item, change its price, delete the user."""
        email = f"demo-{uuid.uuid4().hex[:8]}@example.com"
        password = f"demo-{uuid.uuid4().hex}"
        with (
            httpx.Client(base_url=self.gateway_url, timeout=15) as http,
            MailClient(self.mail_api_url) as mail,
        ):
            self.say(f"1. register {email}")
            user = self._check(
                http.post(
                    "/api/v1/users", json={"email": email, "name": "Demo", "password": password}
                ),
                201,
                "register",
            )
            self._mail(mail, email, "welcome")
            verification = self._mail(mail, email, "confirm")
            found = TOKEN_IN_LINK.search(str(verification.get("Text", "")))
            if found is None:
                raise DemoError("the verification email carries no token link")
            self.say("2. verify the address with the token from the email")
            self._check(
                http.post("/api/v1/auth/verify-email", json={"token": unquote(found.group(1))}),
                200,
                "verify",
            )
            self.say("3. log in")
            tokens = self._check(
                http.post(
                    "/api/v1/auth/token",
                    data={"grant_type": "password", "username": email, "password": password},
                ),
                200,
                "login",
            )
            auth = {"Authorization": f"Bearer {tokens['access_token']}"}
            self.say("4. list an item")
            item = self._check(
                http.post(
                    "/api/v1/items",
                    json={"name": "Demo lamp", "price": "19.90", "tags": ["demo"]},
                    headers={**auth, "Idempotency-Key": uuid.uuid4().hex},
                ),
                201,
                "create item",
            )
            self._mail(mail, email, "is listed")
            self.say("5. change its price")
            self._check(
                http.patch(f"/api/v1/items/{item['id']}", json={"price": "24.50"}, headers=auth),
                200,
                "change price",
            )
            self._mail(mail, email, "was changed")
            self.say("6. delete the user: its items go too")
            resp = http.delete("/api/v1/users/me", headers=auth)
            if resp.status_code != 204:
                raise DemoError(f"delete user: HTTP {resp.status_code}: {resp.text}")
            self.say(f"  DELETE /api/v1/users/me -> {resp.status_code}")
            self._mail(mail, email, "account was deleted")
            # The items service learns of the deletion from users.events: poll for it.
            deadline = time.monotonic() + self.mail_timeout_s
            left: dict[str, Any] = {}
            while time.monotonic() < deadline:
                left = http.get("/api/v1/items", params={"owner_id": user["id"]}).json()
                if left.get("total") == 0:
                    break
                time.sleep(0.25)
            else:
                raise DemoError(f"the deleted user still has items: {left}")
            self.say("  the user's items are gone (ItemDeleted, reason owner_deleted)")
            self.say(f"done: {len(self.seen)} emails, user {user['id']} and their items are gone")
