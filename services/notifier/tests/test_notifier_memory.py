"""The notifier's handlers through the in-memory consumer driver: real database, no broker.

Planners, the postman and the failure policy run as the consumer loop runs them; the SMTP
server is a recording fake, so a retry schedule of minutes runs in milliseconds.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from agora_contract import FieldChange, ItemCreated, UserRegistered, UserUpdated
from agora_kit.consumer import ConsumerConfig
from agora_kit.consumer.memory import MemoryConsumer
from agora_kit.consumer.retry import Backoff
from agora_kit.db import create_engine, create_session_factory
from agora_kit.settings import ServiceSettings
from agora_notifier import models, projection
from agora_notifier.handlers import NotifierHandlers
from agora_notifier.postman import Postman
from agora_notifier.postman_config import PostmanConfig
from agora_notifier.rendering import Renderer
from agora_notifier.smtp import SendError
from agora_notifier.wording import Links
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

#: A backoff no test could wait for: only MemoryConsumer.run_retries gets past it.
HOUR = Backoff(base_s=3600, max_s=3600, jitter=0)


class RecordingSender:
    """Accepts every message after ``failures`` refusals (transient or permanent)."""

    def __init__(self, *, failures: int = 0, permanent: bool = False) -> None:
        self.failures = failures
        self.permanent = permanent
        self.sent: list[EmailMessage] = []

    async def send(self, message: EmailMessage, *, sender: str, recipient: str) -> str:
        if self.failures > 0:
            self.failures -= 1
            code = 550 if self.permanent else 451
            raise SendError(f"{code} refused", permanent=self.permanent, code=code)
        self.sent.append(message)
        return "250 OK"

    async def close(self) -> None:
        return None


class AllowAll:
    async def allow(self, recipient: str) -> bool:
        return True


@pytest_asyncio.fixture(loop_scope="session")
async def session_factory(
    notifier_database: str,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(ServiceSettings(database_url=notifier_database))
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


class CountingPostman(Postman):
    """The real postman, counting how often a handler asks it for what."""

    #: Fresh deliveries taken to ``sending`` in the handler's own transaction.
    fresh = 0
    #: Deliveries looked up and attempted in transactions of their own.
    lookups = 0

    async def prepare(self, *args: Any, **kwargs: Any) -> Any:
        self.fresh += 1
        return await super().prepare(*args, **kwargs)

    async def deliver(self, *args: Any, **kwargs: Any) -> None:
        self.lookups += 1
        await super().deliver(*args, **kwargs)


def consumer(
    session_factory: async_sessionmaker[AsyncSession], sender: RecordingSender
) -> MemoryConsumer:
    return driven(session_factory, sender)[0]


def driven(
    session_factory: async_sessionmaker[AsyncSession], sender: RecordingSender
) -> tuple[MemoryConsumer, CountingPostman]:
    postman = CountingPostman(
        session_factory=session_factory,
        sender=sender,
        throttle=AllowAll(),
        renderer=Renderer(),
        config=PostmanConfig(
            sender=Address("Agora", "no-reply", "agora.test"),
            message_id_domain="agora.test",
            max_attempts=3,
        ),
    )
    handlers = NotifierHandlers(
        session_factory=session_factory, postman=postman, links=Links("http://gateway.test")
    )
    driver = MemoryConsumer(
        group=f"memory-{uuid.uuid4().hex[:8]}",
        handlers=handlers.table(),
        session_factory=session_factory,
        tables=models.consumer,
        config=ConsumerConfig(max_attempts=3, backoff=HOUR),
    )
    return driver, postman


def registered() -> UserRegistered:
    user_id = uuid.uuid4().int % 2**52
    return UserRegistered(
        user_id=user_id,
        email=f"ada-{user_id}@example.test",
        name="Ada",
        registered_at=datetime.now(UTC),
    )


@pytest.mark.asyncio(loop_scope="session")
async def test_a_registration_sends_one_welcome_even_when_redelivered(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    sender = RecordingSender()
    driver = consumer(session_factory, sender)
    event = registered()
    envelope = await driver.send(event)
    await driver.send_envelope(envelope, topic=event.topic)  # the broker delivers it again
    (mail,) = sender.sent
    assert mail["To"].addresses[0].addr_spec == event.email
    assert "welcome" in str(mail["Subject"]).lower()
    assert await driver.waiting_retries() == 0


@pytest.mark.asyncio(loop_scope="session")
async def test_a_transient_refusal_waits_in_the_retry_store_then_goes_once(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    sender = RecordingSender(failures=1)
    driver = consumer(session_factory, sender)
    await driver.send(registered())
    assert sender.sent == []
    assert await driver.waiting_retries() == 1  # an hour's backoff, in the real table
    assert await driver.run_retries() == 1
    assert len(sender.sent) == 1
    assert await driver.waiting_retries() == 0


@pytest.mark.asyncio(loop_scope="session")
async def test_a_permanent_refusal_becomes_a_dead_letter_and_nothing_is_sent(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    sender = RecordingSender(failures=1, permanent=True)
    driver = consumer(session_factory, sender)
    envelope = await driver.send(registered())
    assert sender.sent == []
    assert await driver.waiting_retries() == 0
    dead = models.consumer.dead_letter
    async with session_factory() as session:
        kinds = (
            await session.scalars(
                sa.select(dead.c.error_kind).where(
                    dead.c.consumer_group == driver.dispatcher.group,
                    dead.c.event_id == envelope.id,
                )
            )
        ).all()
    assert kinds == ["permanent"]


@pytest.mark.asyncio(loop_scope="session")
async def test_an_event_that_plans_no_email_skips_the_postman_until_redelivered(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    sender = RecordingSender()
    driver, postman = driven(session_factory, sender)
    event = registered()
    await driver.send(event)
    assert (postman.fresh, postman.lookups) == (1, 0)  # the welcome, in the handler's txn
    update = UserUpdated(
        user_id=event.user_id, changes={"name": FieldChange(old="Ada", new="Ada L.")}
    )
    envelope = await driver.send(update, aggregateversion=2)
    assert (postman.fresh, postman.lookups) == (1, 0)  # nothing planned: nothing to attempt
    # A redelivery cannot know what its first attempt recorded, so it looks them up.
    await driver.send_envelope(envelope, topic=update.topic)
    assert (postman.fresh, postman.lookups) == (1, 1)
    assert len(sender.sent) == 1


@pytest.mark.asyncio(loop_scope="session")
async def test_the_item_projection_keeps_the_newest_version(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    item_id = uuid.uuid4().int % 2**52

    def created(name: str) -> ItemCreated:
        return ItemCreated(
            item_id=item_id, owner_id=1, name=name, description=None, price=Decimal("1.00"),
            currency="EUR", tags=[], status="active",
        )  # fmt: skip

    async def apply(name: str, version: int | None) -> str | None:
        async with session_factory.begin() as session:
            await projection.apply_item_created(session, created(name), version)
        async with session_factory() as session:
            known = await projection.get_item(session, item_id)
        return None if known is None else known.name

    assert await apply("v2", 2) == "v2"
    assert await apply("v1", 1) == "v2"  # an older event arriving late changes nothing
    assert await apply("v3", 3) == "v3"
    assert await apply("unversioned", None) == "unversioned"  # no version: the last one wins


@pytest.mark.asyncio(loop_scope="session")
async def test_item_mail_shares_the_owner_row_and_an_erasure_waits_for_it(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    event = registered()
    async with session_factory.begin() as session:
        await projection.apply_registered(session, event, 1)
    async with (
        session_factory() as first,
        session_factory() as second,
        first.begin(),
        second.begin(),
    ):
        # Two handlers planning item mail for one owner: neither waits for the other.
        assert await projection.get_recipient(first, event.user_id, lock="share")
        async with asyncio.timeout(5):
            assert await projection.get_recipient(second, event.user_id, lock="share")
        # An erasure (or any change) of the owner waits until both have committed.
        async with session_factory() as eraser, eraser.begin():
            await eraser.execute(sa.text("SET LOCAL lock_timeout = '200ms'"))
            with pytest.raises(sa.exc.DBAPIError, match="lock timeout"):
                await projection.get_recipient(eraser, event.user_id, lock="update")
    async with session_factory() as eraser, eraser.begin():
        await eraser.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
        assert await projection.get_recipient(eraser, event.user_id, lock="update")
