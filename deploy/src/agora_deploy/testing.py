"""Pytest fixtures that start the embedded stack once per test session (loaded by conftest.py).

Each backing service starts lazily, the first time a test asks for it, on free loopback ports,
with its data in the session's temporary folder. Every process dies with the test run: the
fixtures stop them at the end of the session, and the kernel kills them (PR_SET_PDEATHSIG) if
pytest itself dies. ``DATABASE_URL``, ``REDIS_URL``, ``KAFKA_BOOTSTRAP_SERVERS`` and
``SMTP_URL`` (+ ``MAIL_API_URL``) point the fixtures at external services instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from agora_deploy.launchers.kafka import Broker
from agora_deploy.stack import Infra, database_url


@dataclass(frozen=True)
class MailSinkHandle:
    """Where the test session's mail sink listens."""

    api_url: str
    smtp_url: str


@pytest.fixture(scope="session")
def agora_infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    """The session's stack of backing services (started lazily, stopped at the end)."""
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
    """Handle on the embedded broker, to freeze and thaw it (fault tests)."""
    if agora_infra.broker is None:
        pytest.skip("needs the embedded broker (KAFKA_BOOTSTRAP_SERVERS points elsewhere)")
    return agora_infra.broker


@pytest.fixture(scope="session")
def mail_sink(agora_infra: Infra) -> MailSinkHandle:
    """The session's mail sink (Mailpit's API at ``api_url``, SMTP at ``smtp_url``)."""
    info = agora_infra.start_mail()
    return MailSinkHandle(api_url=info.url, smtp_url=info.extra["smtp_url"])
