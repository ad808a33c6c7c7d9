"""Each event kind gives exactly the expected email, read back from the mail sink."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

import pytest
from agora_contract import (
    FieldChange,
    ItemCreated,
    ItemDeleted,
    ItemUpdated,
    SendEmailVerification,
    SendPasswordReset,
    UserDeleted,
    UserEmailChanged,
    UserRegistered,
)
from agora_notifier.config import NotifierSettings
from agora_notifier.rendering import message_id
from agora_notifier.testing import Mail, MailApi, Publisher
from fastapi import FastAPI
from sqlalchemy import text

NewUser = Callable[[], tuple[int, str]]
DOMAIN = "agora.localhost"


def expect_mail(mail: Mail, *, to: str, subject: str, event_id: UUID, kind: str) -> None:
    """The envelope facts every notifier email shares."""
    assert mail.to == [to]
    assert mail.subject == subject
    assert mail.message_id == message_id(event_id, kind, to, DOMAIN).strip("<>")
    assert mail.headers["X-Agora-Kind"] == [kind]
    assert mail.headers["Auto-Submitted"] == ["auto-generated"]
    assert mail.text.strip()
    assert mail.html.strip()


async def wait_processed(app: FastAPI, event_id: UUID, timeout_s: float = 30) -> None:
    """Poll the inbox until the consumer has applied ``event_id``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        async with app.state.ctx.engine.connect() as conn:
            found = (
                await conn.execute(text("SELECT 1 FROM inbox WHERE event_id = :e"), {"e": event_id})
            ).first()
        if found is not None:
            return
        assert asyncio.get_running_loop().time() < deadline, f"event {event_id} never handled"
        await asyncio.sleep(0.2)


async def register(publish: Publisher, user_id: int, email: str, name: str = "Ada") -> UUID:
    envelope = await publish.event(
        UserRegistered(user_id=user_id, email=email, name=name, registered_at=datetime.now(UTC)),
        aggregateversion=1,
    )
    return envelope.id


@pytest.mark.asyncio
async def test_welcome_mail(
    notifier_app: FastAPI,
    notifier_publish: Publisher,
    notifier_mail: MailApi,
    notifier_new_user: NewUser,
) -> None:
    user_id, email = notifier_new_user()
    event_id = await register(notifier_publish, user_id, email, name="Ada <Lovelace> & Co")
    [mail] = await notifier_mail.wait_for(email)
    expect_mail(
        mail,
        to=email,
        subject="Welcome to Agora, Ada <Lovelace> & Co",
        event_id=event_id,
        kind="welcome",
    )
    assert "Hello Ada <Lovelace> & Co," in mail.text  # the text part is not HTML-escaped
    assert "Ada &lt;Lovelace&gt; &amp; Co" in mail.html  # the HTML part is
    assert "<Lovelace>" not in mail.html
    assert "http://gateway.test/items/new" in mail.text


@pytest.mark.asyncio
async def test_verification_and_reset_commands(
    notifier_app: FastAPI,
    notifier_publish: Publisher,
    notifier_mail: MailApi,
    notifier_new_user: NewUser,
) -> None:
    user_id, email = notifier_new_user()
    expires = datetime(2030, 1, 2, 3, 4, tzinfo=UTC)
    verify = await notifier_publish.event(
        SendEmailVerification(
            user_id=user_id, email=email, name="Bo", token="v/t+1=", expires_at=expires
        )
    )
    reset = await notifier_publish.event(
        SendPasswordReset(user_id=user_id, email=email, name="Bo", token="r-2", expires_at=expires)
    )
    mails = await notifier_mail.wait_for(email, count=2)
    by_kind = {m.headers["X-Agora-Kind"][0]: m for m in mails}
    expect_mail(
        by_kind["email_verification"],
        to=email,
        subject="Confirm your email address for Agora",
        event_id=verify.id,
        kind="email_verification",
    )
    assert (
        "http://gateway.test/verify-email?token=v%2Ft%2B1%3D" in by_kind["email_verification"].text
    )
    assert "2030-01-02 03:04 UTC" in by_kind["email_verification"].text
    expect_mail(
        by_kind["password_reset"],
        to=email,
        subject="Reset your Agora password",
        event_id=reset.id,
        kind="password_reset",
    )
    assert "http://gateway.test/reset-password?token=r-2" in by_kind["password_reset"].html


@pytest.mark.asyncio
async def test_a_replayed_command_without_its_token_sends_nothing(
    notifier_app: FastAPI,
    notifier_publish: Publisher,
    notifier_mail: MailApi,
    notifier_new_user: NewUser,
) -> None:
    """A dead letter keeps no one-time token; replayed, it must not mail a dead link."""
    user_id, email = notifier_new_user()
    expires = datetime(2030, 1, 2, 3, 4, tzinfo=UTC)
    redacted = await notifier_publish.event(
        SendEmailVerification(
            user_id=user_id, email=email, name="Cy", token="[redacted]", expires_at=expires
        )
    )
    await wait_processed(notifier_app, redacted.id)
    fresh = await notifier_publish.event(
        SendEmailVerification(
            user_id=user_id, email=email, name="Cy", token="fresh-1", expires_at=expires
        )
    )
    [mail] = await notifier_mail.wait_for(email)
    assert mail.message_id == message_id(fresh.id, "email_verification", email, DOMAIN).strip("<>")
    assert "token=fresh-1" in mail.text
    assert "redacted" not in mail.text


@pytest.mark.asyncio
async def test_email_change_mails_both_addresses(
    notifier_app: FastAPI,
    notifier_publish: Publisher,
    notifier_mail: MailApi,
    notifier_new_user: NewUser,
) -> None:
    user_id, old = notifier_new_user()
    _, new = notifier_new_user()
    await register(notifier_publish, user_id, old, name="Cy")
    await notifier_mail.wait_for(old)
    changed = await notifier_publish.event(
        UserEmailChanged(user_id=user_id, old_email=old, new_email=new), aggregateversion=2
    )
    mails_old = await notifier_mail.wait_for(old, count=2)
    [to_new] = await notifier_mail.wait_for(new)
    to_old = next(m for m in mails_old if m.headers["X-Agora-Kind"] == ["email_changed"])
    subject = "Your Agora email address was changed"
    expect_mail(to_old, to=old, subject=subject, event_id=changed.id, kind="email_changed")
    expect_mail(to_new, to=new, subject=subject, event_id=changed.id, kind="email_changed")
    assert f"changed from {old} to {new}" in to_old.text
    assert "reset your password" in to_old.text
    assert f"This address, {new}, is now" in to_new.text
    # Item mail now goes to the new address: the projection followed the change.
    item = await notifier_publish.event(
        ItemCreated(
            item_id=user_id,
            owner_id=user_id,
            name="Lamp",
            description=None,
            price=Decimal("5"),
            currency="EUR",
            tags=[],
            status="active",
        )
    )
    mails_new = await notifier_mail.wait_for(new, count=2)
    assert any(
        m.message_id == message_id(item.id, "item_listed", new, DOMAIN).strip("<>")
        for m in mails_new
    )


@pytest.mark.asyncio
async def test_item_mails(
    notifier_app: FastAPI,
    notifier_publish: Publisher,
    notifier_mail: MailApi,
    notifier_new_user: NewUser,
) -> None:
    user_id, email = notifier_new_user()
    item_id = user_id
    await register(notifier_publish, user_id, email, name="Di")
    # Items come after their owner is known (else they wait, see test_notifier_ordering).
    await notifier_mail.wait_for(email)
    created = await notifier_publish.event(
        ItemCreated(
            item_id=item_id,
            owner_id=user_id,
            name="Blue <Chair>",
            description="comfy",
            price=Decimal("19.90"),
            currency="EUR",
            tags=["home"],
            status="active",
        ),
        aggregateversion=1,
    )
    updated = await notifier_publish.event(
        ItemUpdated(
            item_id=item_id,
            owner_id=user_id,
            changes={"price": FieldChange(old="19.90", new="17.50")},
        ),
        aggregateversion=2,
    )
    deleted = await notifier_publish.event(
        ItemDeleted(item_id=item_id, owner_id=user_id, reason="owner_request"), aggregateversion=3
    )
    mails = await notifier_mail.wait_for(email, count=4)
    by_kind = {m.headers["X-Agora-Kind"][0]: m for m in mails}
    assert sorted(by_kind) == ["item_changed", "item_listed", "item_removed", "welcome"]
    listed, changed, removed = (
        by_kind["item_listed"],
        by_kind["item_changed"],
        by_kind["item_removed"],
    )
    expect_mail(
        listed,
        to=email,
        subject='Your item "Blue <Chair>" is listed',
        event_id=created.id,
        kind="item_listed",
    )
    assert "listed at 19.90 EUR" in listed.text
    assert f"http://gateway.test/items/{item_id}" in listed.text
    assert "Blue &lt;Chair&gt;" in listed.html
    expect_mail(
        changed,
        to=email,
        subject='Your item "Blue <Chair>" was changed',
        event_id=updated.id,
        kind="item_changed",
    )
    assert "Price: 19.90 EUR -> 17.50 EUR" in changed.text
    assert "19.90 EUR &rarr; 17.50 EUR" in changed.html
    expect_mail(
        removed,
        to=email,
        subject='Your item "Blue <Chair>" was removed',
        event_id=deleted.id,
        kind="item_removed",
    )
    assert "was removed: you deleted it." in removed.text


@pytest.mark.asyncio
async def test_goodbye_then_personal_data_erased(
    notifier_app: FastAPI,
    notifier_publish: Publisher,
    notifier_mail: MailApi,
    notifier_new_user: NewUser,
    notifier_settings: NotifierSettings,
) -> None:
    user_id, email = notifier_new_user()
    await register(notifier_publish, user_id, email, name="Eve")
    deleted = await notifier_publish.event(UserDeleted(user_id=user_id), aggregateversion=2)
    mails = await notifier_mail.wait_for(email, count=2)
    goodbye = next(m for m in mails if m.headers["X-Agora-Kind"] == ["goodbye"])
    expect_mail(
        goodbye,
        to=email,
        subject="Your Agora account was deleted",
        event_id=deleted.id,
        kind="goodbye",
    )
    assert "Hello Eve," in goodbye.text
    # Late item mail for the deleted user goes nowhere; the projection holds no address.
    late = await notifier_publish.event(
        ItemCreated(
            item_id=user_id,
            owner_id=user_id,
            name="Late",
            description=None,
            price=Decimal("1"),
            currency="EUR",
            tags=[],
            status="active",
        )
    )
    await wait_processed(notifier_app, late.id)
    ctx = notifier_app.state.ctx
    async with ctx.engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT email, name, deleted_at FROM recipient WHERE user_id = :u"),
                {"u": user_id},
            )
        ).one()
        assert row.email is None
        assert row.name is None
        assert row.deleted_at is not None
        recipients = (
            await conn.execute(
                text("SELECT recipient, recipient_name FROM delivery WHERE user_id = :u"),
                {"u": user_id},
            )
        ).all()
    assert recipients
    assert all(r.recipient.startswith("erased:") for r in recipients)
    assert all(r.recipient_name is None for r in recipients)
    assert len(await notifier_mail.to(email)) == 2
