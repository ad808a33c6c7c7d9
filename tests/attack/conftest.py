"""Attack-suite fixtures: accounts made through the gateway of the session's ``system_stack``.

Every check runs black-box through the gateway, as an attacker on the internet would. Each
password and token the suite uses is recorded in ``secrets``; the last test greps the stack's
log files for all of them (``test_attack_logs.py``, moved to the end of the run).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from agora_deploy.testing import SystemStack, run_agora
from agora_kit.testing.mail import MailClient

#: ``make attack`` sets it: every JWT attack against every protected endpoint, not one per
#: service (``make attack-ci``).
FULL = os.environ.get("AGORA_ATTACK_FULL") == "1"
PROBLEM = "application/problem+json"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the log grep last: it looks for every secret the other checks used."""
    items.sort(key=lambda item: item.path.name == "test_attack_logs.py")


@dataclass(frozen=True)
class Account:
    """A user made through the gateway, signed in."""

    id: int
    email: str
    password: str
    access: str
    refresh: str

    @property
    def auth(self) -> dict[str, str]:
        """The Authorization header of its access token."""
        return {"Authorization": f"Bearer {self.access}"}


class Accounts:
    """Registers and signs in users through the gateway; records every secret it hands out."""

    def __init__(self, stack: SystemStack, client: httpx.Client, secrets: set[str]) -> None:
        self.stack, self.client, self.secrets = stack, client, secrets

    def password(self) -> str:
        """A fresh password, recorded."""
        password = f"Attack-{uuid.uuid4().hex}"
        self.secrets.add(password)
        return password

    def sign_in(self, email: str, password: str) -> dict[str, Any]:
        """The token response of a password grant (its tokens recorded)."""
        response = self.client.post(
            "/api/v1/auth/token",
            data={"grant_type": "password", "username": email, "password": password},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        self.secrets.update((body["access_token"], body["refresh_token"]))
        return body

    def new(self, name: str = "Attack user") -> Account:
        """A registered, signed-in user."""
        email, password = f"attack-{uuid.uuid4().hex[:12]}@example.com", self.password()
        created = self.client.post(
            "/api/v1/users", json={"email": email, "password": password, "name": name}
        )
        assert created.status_code == 201, created.text
        tokens = self.sign_in(email, password)
        return Account(created.json()["id"], email, password, *_pair(tokens))

    def admin(self) -> Account:
        """An administrator (made with ``agora admin create``), signed in."""
        email, password = f"attack-admin-{uuid.uuid4().hex[:8]}@example.com", self.password()
        made = run_agora(
            self.stack.infra.state_dir, "admin", "create", "--email", email,
            "--password", password, "--name", "Attack admin", "--verified",
        )  # fmt: skip
        assert made.returncode == 0, made.stdout + made.stderr
        tokens = self.sign_in(email, password)
        me = self.client.get(
            "/api/v1/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        return Account(me.json()["id"], email, password, *_pair(tokens))


def _pair(tokens: dict[str, Any]) -> tuple[str, str]:
    return str(tokens["access_token"]), str(tokens["refresh_token"])


@pytest.fixture(scope="session")
def secrets() -> set[str]:
    """Every password and token the suite used (the log grep looks for each)."""
    return set()


@pytest.fixture(scope="session")
def gateway_client(system_stack: SystemStack) -> Iterator[httpx.Client]:
    """An HTTP client of the gateway: the only way in the suite uses."""
    with httpx.Client(base_url=system_stack.gateway, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def accounts(
    system_stack: SystemStack, gateway_client: httpx.Client, secrets: set[str]
) -> Accounts:
    """Makes users and administrators through the gateway."""
    return Accounts(system_stack, gateway_client, secrets)


@pytest.fixture(scope="session")
def mail(system_stack: SystemStack) -> Iterator[MailClient]:
    """A client of the stack's mail sink API."""
    with MailClient(system_stack.mail_api) as client:
        yield client


@pytest.fixture(scope="session")
def signing_key(system_stack: SystemStack) -> tuple[str, bytes]:
    """(kid, PEM) of the stack's active signing key: forged tokens then fail on claims only."""
    folder = Path(system_stack.infra.state_dir) / "keys"
    manifest = json.loads((folder / "keys.json").read_text())
    entry = next(e for e in manifest["keys"] if e["kid"] == manifest["active"])
    return str(entry["kid"]), (folder / Path(str(entry["file"])).name).read_bytes()


def assert_problem(response: httpx.Response, status: int, **fields: object) -> dict[str, Any]:
    """The response is a problem+json of ``status`` whose members include ``fields``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status, body
    for name, value in fields.items():
        assert body.get(name) == value, (name, body)
    return body
