"""Fixtures of the notifier suite: a migrated database, one running app, topics of its own.

The app runs once per test session (its consumer joins a group once, ~5 s on the embedded
broker). Tests stay independent through fresh user ids and addresses, and read mail from the
shared mail sink filtered by their own recipients.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from agora_contract.topics import NOTIFICATIONS_EVENTS
from agora_deploy.testing import MailSinkHandle
from agora_kit.kafka import ensure_topics
from agora_kit.testing.app import ServiceFactory
from agora_kit.testing.jwt import JwksServer
from agora_kit.testing.mail import MailApi
from agora_notifier.config import NotifierSettings
from agora_notifier.main import create_app
from agora_notifier.testing import Publisher
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

PROJECT_DIR = Path(__file__).resolve().parents[1]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def notifier_database(service_factory: ServiceFactory) -> str:
    """A fresh database migrated with the service's Alembic chain."""
    return await service_factory.database("notifier_test", PROJECT_DIR)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def notifier_settings(
    service_factory: ServiceFactory,
    notifier_database: str,
    mail_sink: MailSinkHandle,
    jwks_server: JwksServer,
) -> NotifierSettings:
    """Settings of the suite's app: own topics and group, tiny retry backoffs."""
    suffix = uuid.uuid4().hex[:8]
    settings = service_factory.settings(
        NotifierSettings,
        notifier_database,
        smtp_url=mail_sink.smtp_url,
        jwks_url=jwks_server.url,
        public_url="http://gateway.test",
        consumer_group=f"notifier-test-{suffix}",
        consumer_retry_base_delay_s=0.2,
        consumer_retry_max_delay_s=1.0,
        consumer_max_attempts=40,
        shutdown_timeout_s=5.0,
        users_topic=f"test.notifier.users-events.{suffix}",
        items_topic=f"test.notifier.items-events.{suffix}",
        commands_topic=f"test.notifier.commands.{suffix}",
    )
    await ensure_topics(settings, [*settings.topics, NOTIFICATIONS_EVENTS], partitions=2)
    return settings


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def notifier_app(
    service_factory: ServiceFactory, notifier_settings: NotifierSettings
) -> AsyncIterator[FastAPI]:
    """The running app (lifespan started), once its consumer owns its partitions."""
    app = create_app(notifier_settings)
    async with service_factory.running(app) as client:
        app.state.test_client = client
        yield app


@pytest.fixture
def notifier_client(notifier_app: FastAPI) -> httpx.AsyncClient:
    """An HTTP client bound to the running app."""
    client: httpx.AsyncClient = notifier_app.state.test_client
    return client


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def notifier_producer(service_factory: ServiceFactory) -> AsyncIterator[AIOKafkaProducer]:
    """A plain producer for publishing test envelopes."""
    async with service_factory.producer() as producer:
        yield producer


@pytest.fixture
def notifier_publish(
    notifier_producer: AIOKafkaProducer, notifier_settings: NotifierSettings
) -> Publisher:
    """Publish test envelopes to the suite's topics."""
    return Publisher(notifier_producer, notifier_settings)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def notifier_mail(mail_sink: MailSinkHandle) -> AsyncIterator[MailApi]:
    """The mail sink's API (shared by the session: filter by your own recipients)."""
    api = MailApi(mail_sink.api_url)
    try:
        yield api
    finally:
        await api.aclose()


def _new_user() -> tuple[int, str]:
    token = uuid.uuid4()
    return (token.int % (2**62)) + 1, f"u-{token.hex[:16]}@example.test"


@pytest.fixture
def notifier_new_user() -> Callable[[], tuple[int, str]]:
    """Make a fresh user id and address (unique, so tests never see each other's mail)."""
    return _new_user
