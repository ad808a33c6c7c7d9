"""Fixtures of the notifier suite: a migrated database, one running app, topics of its own.

The app runs once per test session (its consumer joins a group once, ~5 s on the embedded
broker). Tests stay independent through fresh user ids and addresses, and read mail from the
shared mail sink filtered by their own recipients.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from agora_contract.topics import NOTIFICATIONS_EVENTS
from agora_deploy.testing import MailSinkHandle
from agora_kit.kafka import ensure_topics
from agora_kit.settings import Environment
from agora_kit.testing.app import app_client
from agora_kit.testing.db import migrate
from agora_kit.testing.jwt import JwksServer
from agora_kit.testing.mail import MailApi
from agora_notifier.config import NotifierSettings
from agora_notifier.main import create_app
from agora_notifier.testing import Publisher
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

PROJECT_DIR = Path(__file__).resolve().parents[1]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def notifier_database(create_database: Callable[[str], str]) -> str:
    """A fresh database migrated with the service's Alembic chain."""
    url = create_database("notifier_test")
    await migrate(url, PROJECT_DIR)
    return url


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def notifier_settings(
    notifier_database: str,
    redis_url: str,
    kafka_bootstrap: str,
    mail_sink: MailSinkHandle,
    jwks_server: JwksServer,
) -> NotifierSettings:
    """Settings of the suite's app: own topics and group, tiny retry backoffs."""
    suffix = uuid.uuid4().hex[:8]
    settings = NotifierSettings(
        env=Environment.TEST,
        database_url=notifier_database,
        redis_url=redis_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_enable_idempotence=False,
        smtp_url=mail_sink.smtp_url,  # type: ignore[arg-type]  # validated into SecretStr
        jwks_url=jwks_server.url,
        public_url="http://gateway.test",
        consumer_group=f"notifier-test-{suffix}",
        consumer_retry_base_delay_s=0.2,
        consumer_retry_max_delay_s=1.0,
        consumer_max_attempts=40,
        log_json=False,
        log_level="WARNING",
        shutdown_timeout_s=5.0,
        relay_poll_interval_s=0.2,
        users_topic=f"test.notifier.users-events.{suffix}",
        items_topic=f"test.notifier.items-events.{suffix}",
        commands_topic=f"test.notifier.commands.{suffix}",
    )
    await ensure_topics(settings, [*settings.topics, NOTIFICATIONS_EVENTS], partitions=2)
    return settings


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def notifier_app(notifier_settings: NotifierSettings) -> AsyncIterator[FastAPI]:
    """The running app (lifespan started), once its consumer owns its partitions."""
    app = create_app(notifier_settings)
    async with app_client(app) as client:
        app.state.test_client = client
        consumer = app.state.ctx.runtime.consumer
        deadline = asyncio.get_running_loop().time() + 60
        while not consumer.assignment:
            assert asyncio.get_running_loop().time() < deadline, "consumer never got partitions"
            await asyncio.sleep(0.2)
        yield app


@pytest.fixture
def notifier_client(notifier_app: FastAPI) -> httpx.AsyncClient:
    """An HTTP client bound to the running app."""
    client: httpx.AsyncClient = notifier_app.state.test_client
    return client


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def notifier_producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    """A plain producer for publishing test envelopes."""
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, enable_idempotence=False, acks="all"
    )
    await asyncio.wait_for(producer.start(), 30)
    try:
        yield producer
    finally:
        await asyncio.wait_for(producer.stop(), 30)


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
