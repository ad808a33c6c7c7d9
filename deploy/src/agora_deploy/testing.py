"""Pytest fixtures that start the embedded stack once per test session (loaded by conftest.py).

Each backing service starts lazily, the first time a test asks for it, on free loopback ports,
with its data in the session's temporary folder. Every process dies with the test run: the
fixtures stop them at the end of the session, and the kernel kills them (PR_SET_PDEATHSIG) if
pytest itself dies. ``DATABASE_URL``, ``REDIS_URL``, ``KAFKA_BOOTSTRAP_SERVERS`` and
``SMTP_URL`` (+ ``MAIL_API_URL``) point the fixtures at external services instead, and
``AGORA_TEST_INFRA=docker`` starts the backing services in containers (docs/testing.md).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from urllib.parse import unquote

import httpx
import pytest
import pytest_asyncio
from agora_kit.testing.app import ServiceFactory
from agora_kit.testing.jwt import JwksServer, JwtKeyring
from agora_kit.testing.mail import MailClient

# Re-exported: the deploy tests and the fuzz suite run the CLI through this module.
from agora_deploy.clirun import run_agora as run_agora
from agora_deploy.infra import Infra
from agora_deploy.launchers.kafka import Broker
from agora_deploy.launchers.process import free_port
from agora_deploy.services import INSTALL_HINT, missing_services
from agora_deploy.stack import database_url
from agora_deploy.up import UpOptions, bring_up

# Its hooks say in the header and the summary which infrastructure the tests ran on.
pytest_plugins = ["agora_deploy.containers"]


@dataclass(frozen=True)
class MailSinkHandle:
    """Where the test session's mail sink listens."""

    api_url: str
    smtp_url: str


@pytest.fixture(scope="session")
def agora_infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    """The session's stack of backing services (started lazily, stopped at the end).

    Embedded processes by default; containers when ``AGORA_TEST_INFRA=docker``
    (agora_deploy.containers). The fixtures below work the same on both.
    """
    # Imported here: the module is also a pytest plugin (below), registered after this import.
    from agora_deploy.container_infra import ContainerInfra
    from agora_deploy.containers import use_containers

    infra: Infra
    if use_containers():
        infra = ContainerInfra(tmp_path_factory.mktemp("agora-containers"))
    else:
        infra = Infra(tmp_path_factory.mktemp("agora-stack"), die_with_parent=True, ephemeral=True)
    try:
        yield infra
    finally:
        infra.stop()


@pytest.fixture(scope="session")
def postgres_url(agora_infra: Infra) -> str:
    """Server URL of the session's PostgreSQL (``postgresql://postgres@127.0.0.1:PORT/postgres``)."""
    return database_url(agora_infra.start_postgres().url, "postgres", driver="postgresql")


@pytest.fixture(scope="session")
def create_database(agora_infra: Infra, postgres_url: str) -> Callable[[str], str]:
    """Return a function that creates a fresh database and returns its asyncpg URL."""

    def _create(prefix: str) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}".lower()
        agora_infra.create_database(name)
        return database_url(postgres_url, name)

    return _create


@pytest.fixture(scope="session")
def redis_url(agora_infra: Infra) -> str:
    """URL of the session's Redis (tests share it: use unique keys)."""
    return agora_infra.start_redis().url


@pytest.fixture(scope="session")
def kafka_bootstrap(agora_infra: Infra) -> str:
    """Bootstrap servers of the session's broker (use unique topic and group names)."""
    return agora_infra.start_kafka().url


@pytest.fixture(scope="session")
def kafka_broker(agora_infra: Infra, kafka_bootstrap: str) -> Broker:
    """Handle on the session's broker, to freeze and thaw it (fault tests).

    Embedded: SIGSTOP/SIGCONT. In a container: docker pause/unpause, which freezes it alike.
    """
    if agora_infra.broker is None:
        pytest.skip(
            "needs a broker this session started (KAFKA_BOOTSTRAP_SERVERS points elsewhere)"
        )
    return agora_infra.broker


@pytest.fixture(scope="session")
def mail_sink(agora_infra: Infra) -> MailSinkHandle:
    """The session's mail sink (Mailpit's API at ``api_url``, SMTP at ``smtp_url``)."""
    info = agora_infra.start_mail()
    return MailSinkHandle(api_url=info.url, smtp_url=info.text("smtp_url"))


@pytest.fixture(scope="session")
def service_factory(
    create_database: Callable[[str], str], redis_url: str, kafka_bootstrap: str
) -> ServiceFactory:
    """A service suite's database, settings, Kafka clients and running app, on this session."""
    return ServiceFactory(create_database, redis_url, kafka_bootstrap)


@dataclass(frozen=True)
class SystemStack:
    """The whole system, started exactly as ``agora up`` starts it."""

    infra: Infra
    gateway: str
    mail_api: str
    kafka: str

    def service_url(self, name: str) -> str:
        """Direct URL of one service (bypassing the gateway)."""
        return self.infra.components[name].url


@pytest.fixture(scope="session")
def jwt_keyring() -> JwtKeyring:
    """Signing keys for the session: the users service's stand-in for the other suites."""
    return JwtKeyring()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def jwks_server(jwt_keyring: JwtKeyring) -> AsyncIterator[JwksServer]:
    """A loopback server publishing ``jwt_keyring``'s JWKS."""
    async with JwksServer(jwt_keyring) as server:
        yield server


@pytest.fixture(scope="session")
def system_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemStack]:
    """Every process of the system (``agora up``'s own code path); all stopped at the end."""
    # A missing service is a broken environment, not a reason to skip the system tests.
    missing = missing_services()
    if missing:
        pytest.fail(
            f"service package(s) not installed: {', '.join(s.package for s in missing)}; "
            f"run {INSTALL_HINT}"
        )
    infra = Infra(tmp_path_factory.mktemp("system"), die_with_parent=True, ephemeral=True)
    try:
        # Traced as `agora up --trace` runs: the system tests exercise tracing on, and
        # `agora trace` has spans to read (tests/e2e/test_e2e_traces.py).
        bring_up(infra, UpOptions(gateway_port=free_port(), trace=True))
        yield SystemStack(
            infra=infra,
            gateway=infra.components["gateway"].url,
            mail_api=infra.components["mail"].url,
            kafka=infra.components["kafka"].url,
        )
    finally:
        infra.stop()


_TOKEN_LINK = re.compile(r"[?&]token=([^\s&\"'<>]+)")


def verify_address(gateway: httpx.Client, mail: MailClient, email: str) -> None:
    """Follow the verification link mailed to ``email`` (item mail and goodbyes need it)."""
    message = mail.wait_subject(email, "confirm your email")
    text = str(mail.message(str(message["ID"]))["Text"])
    token = _TOKEN_LINK.search(text)
    assert token, text
    resp = gateway.post("/api/v1/auth/verify-email", json={"token": unquote(token.group(1))})
    assert resp.status_code in (200, 204), resp.text
