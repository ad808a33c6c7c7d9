"""The whole system as `agora up` starts it, for end-to-end tests through the gateway."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from agora_deploy.launchers.process import free_port
from agora_deploy.services import available_services
from agora_deploy.stack import Infra
from agora_deploy.up import UpOptions, bring_up

SERVICES = ("users", "items", "notifier")


@dataclass(frozen=True)
class E2EStack:
    """URLs of the running system."""

    infra: Infra
    gateway: str
    mail_api: str
    kafka: str

    def service_url(self, name: str) -> str:
        """Direct URL of one service (bypassing the gateway)."""
        return self.infra.components[name].url


@pytest.fixture(scope="session")
def e2e_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EStack]:
    """Start every process exactly as `agora up` does; stop them all at the end."""
    installed = {spec.name for spec in available_services()}
    missing = [name for name in SERVICES if name not in installed]
    if missing:
        pytest.skip(f"services not installed yet: {', '.join(missing)}")
    state: Path = tmp_path_factory.mktemp("e2e-stack")
    infra = Infra(state, die_with_parent=True, ephemeral=True)
    try:
        bring_up(infra, UpOptions(gateway_port=free_port()))
        stack = E2EStack(
            infra=infra,
            gateway=infra.components["gateway"].url,
            mail_api=infra.components["mail"].url,
            kafka=infra.components["kafka"].url,
        )
        yield stack
    finally:
        infra.stop()


@pytest.fixture
def gateway(e2e_stack: E2EStack) -> Iterator[httpx.Client]:
    """An HTTP client whose every call goes through the gateway."""
    with httpx.Client(base_url=e2e_stack.gateway, timeout=15) as client:
        yield client


def wait_for(predicate: object, timeout: float = 30.0, interval: float = 0.25) -> object:
    """Poll ``predicate()`` until it returns a truthy value; fail after ``timeout``."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")
