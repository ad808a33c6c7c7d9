"""End-to-end fixtures: a client whose every call goes through the gateway."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from agora_deploy.mailclient import MailClient
from agora_deploy.testing import SystemStack


@pytest.fixture
def gateway(system_stack: SystemStack) -> Iterator[httpx.Client]:
    """An HTTP client of the gateway."""
    with httpx.Client(base_url=system_stack.gateway, timeout=15) as client:
        yield client


@pytest.fixture
def mail(system_stack: SystemStack) -> Iterator[MailClient]:
    """A client of the stack's mail API."""
    with MailClient(system_stack.mail_api) as client:
        yield client
