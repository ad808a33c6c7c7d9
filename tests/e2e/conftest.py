"""End-to-end fixtures: a client whose every call goes through the gateway.

By default the suite starts the whole system as ``agora up`` does. ``AGORA_E2E_GATEWAY_URL``
(with ``AGORA_E2E_MAIL_API_URL``) points it at a system that already runs instead, e.g. the
docker-compose stack of ``make compose-e2e``; tests that need the embedded stack's insides
(its services' own addresses, its broker) are then skipped, by name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest
from agora_kit.testing.mail import MailClient

GATEWAY_SETTING = "AGORA_E2E_GATEWAY_URL"
MAIL_SETTING = "AGORA_E2E_MAIL_API_URL"


@pytest.fixture(scope="session")
def running_system() -> tuple[str, str] | None:
    """(gateway URL, mail API URL) of a system started elsewhere, or None."""
    gateway = os.environ.get(GATEWAY_SETTING, "").rstrip("/")
    if not gateway:
        return None
    mail = os.environ.get(MAIL_SETTING, "").rstrip("/")
    if not mail:
        raise pytest.UsageError(f"{GATEWAY_SETTING} is set: set {MAIL_SETTING} too")
    return gateway, mail


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Against a system started elsewhere, skip the tests that need the embedded stack."""
    if not os.environ.get(GATEWAY_SETTING):
        return
    skip = pytest.mark.skip(
        reason=f"needs the embedded stack's processes ({GATEWAY_SETTING} is set)"
    )
    for item in items:
        if "system_stack" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


@pytest.fixture
def gateway(
    request: pytest.FixtureRequest, running_system: tuple[str, str] | None
) -> Iterator[httpx.Client]:
    """An HTTP client of the gateway."""
    if running_system is not None:
        base = running_system[0]
    else:
        base = request.getfixturevalue("system_stack").gateway
    with httpx.Client(base_url=base, timeout=15) as client:
        yield client


@pytest.fixture
def mail(
    request: pytest.FixtureRequest, running_system: tuple[str, str] | None
) -> Iterator[MailClient]:
    """A client of the stack's mail API."""
    if running_system is not None:
        api = running_system[1]
    else:
        api = request.getfixturevalue("system_stack").mail_api
    with MailClient(api) as client:
        yield client
