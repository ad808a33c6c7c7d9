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
from agora_kit.testing.mail import Mail, MailApi
from agora_notifier.config import NotifierSettings
from agora_notifier.rendering import message_id
from agora_notifier.testing import Publisher
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
    # The link is the gateway's front page (there is no item form in the browser).
    assert "list your first item at http://gateway.test/\n" in mail.text
    assert '<a href="http://gateway.test/">' in mail.html


@pytest.mark.asyncio
async def test_verification_and_reset_commands(
    notifier_app: FastAPI,
    notifier_publish: Publisher,
    notifier_mail: MailApi,
    notifier_new_user: NewUser,
) -> None:
    user_id, email = notifier_new_user()
    await register(notifier_publish, user_id, email, name="Bo")
    await notifier_publish.verified(user_id, aggregateversion=2)
    await notifier_mail.wait_for(email)
    expires = datetime(2030, 1, 2, 3, 4, tzinfo=UTC)
    verify = await notifier_publish.event(
        SendEmailVerification(
            user_id=user_id, email=email, name="Bo", token="v/t+1=", expires_at=expires
        )
    )
    reset = await notifier_publish.event(
        SendPasswordReset(user_id=user_id, email=email, name="Bo", token="r-2", expires_at=expires)
    )
    mails = await notifier_mail.wait_for(email, count=3)
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
async def test_email_change_tells_the_old_verified_address_only(
    notifier_app: FastAPI,
    notifier_publish: Publisher,
    notifier_mail: MailApi,
    notifier_new_user: NewUser,
) -> None:
    user_id, old = notifier_new_user()
    _, new = notifier_new_user()
    await register(notifier_publish, user_id, old, name="Cy")
    await notifier_publish.verified(user_id, aggregateversion=2)
    await notifier_mail.wait_for(old)
    changed = await notifier_publish.event(
        UserEmailChanged(user_id=user_id, old_email=old, new_email=new), aggregateversion=3
    )
    mails_old = await notifier_mail.wait_for(old, count=2)
    to_old = next(m for m in mails_old if m.headers["X-Agora-Kind"] == ["email_changed"])
    subject = "Your Agora email address was changed"
    expect_mail(to_old, to=old, subject=subject, event_id=changed.id, kind="email_changed")
    assert f"changed from {old} to {new}" in to_old.text
    assert "reset your password" in to_old.text
    # The new address is not verified yet: its item mail waits (retried) until it is.
    unverified = await notifier_publish.event(
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
    await asyncio.sleep(1.0)
    assert await notifier_mail.to(new) == [], "no item mail before the address is verified"
    # Once verified, item mail goes to the new address: the projection followed the change,
    # and the item listed before the verification is mailed now.
    await notifier_publish.verified(user_id, aggregateversion=4)
    item = await notifier_publish.event(
        ItemUpdated(
            item_id=user_id, owner_id=user_id, changes={"price": FieldChange(old="5", new="6")}
        ),
        aggregateversion=2,
    )
    mails_new = await notifier_mail.wait_for(new, count=2)
    by_kind = {m.headers["X-Agora-Kind"][0]: m for m in mails_new}
    assert set(by_kind) == {"item_listed", "item_changed"}
    changed_id = message_id(item.id, "item_changed", new, DOMAIN).strip("<>")
    assert by_kind["item_changed"].message_id == changed_id
    listed_id = message_id(unverified.id, "item_listed", new, DOMAIN).strip("<>")
    assert by_kind["item_listed"].message_id == listed_id


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
    await notifier_publish.verified(user_id, aggregateversion=2)
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
    await notifier_publish.verified(user_id, aggregateversion=2)
    deleted = await notifier_publish.event(UserDeleted(user_id=user_id), aggregateversion=3)
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


@pytest.mark.asyncio
async def test_an_address_nobody_verified_gets_registration_mail_only_and_bounded(
    notifier_app: FastAPI,
    notifier_publish: Publisher,
    notifier_mail: MailApi,
    notifier_new_user: NewUser,
) -> None:
    """docs/security.md, finding 5: item mail to an unverified owner; the email-change flip-flop."""
    user_id, own = notifier_new_user()
    _, third = notifier_new_user()
    await register(notifier_publish, user_id, own, name="Mallory http://evil.example")
    await notifier_publish.event(
        ItemCreated(
            item_id=user_id,
            owner_id=user_id,
            name="Visit http://evil.example",
            description=None,
            price=Decimal("1"),
            currency="EUR",
            tags=[],
            status="active",
        )
    )
    # The owner flips its address to a third party's and back, four times over.
    version, expires = 2, datetime(2030, 1, 1, tzinfo=UTC)
    events = []
    for _ in range(4):
        for old, new in ((own, third), (third, own)):
            change = UserEmailChanged(user_id=user_id, old_email=old, new_email=new)
            events.append(await notifier_publish.event(change, aggregateversion=version))
            version += 1
            command = SendEmailVerification(
                user_id=user_id, email=new, name="Mallory", token="t", expires_at=expires
            )
            events.append(await notifier_publish.event(command))
    one_more = SendEmailVerification(
        user_id=user_id, email=own, name="Mallory", token="t", expires_at=expires
    )
    events.append(await notifier_publish.event(one_more))
    # The item waits for a verification that never comes (retried, then recorded skipped).
    for envelope in events:
        await wait_processed(notifier_app, envelope.id)
    to_third = await notifier_mail.wait_for(third, count=4)
    assert {m.headers["X-Agora-Kind"][0] for m in to_third} == {"email_verification"}
    async with notifier_app.state.ctx.engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT kind, recipient, status, last_error FROM delivery WHERE user_id = :u"),
                {"u": user_id},
            )
        ).all()
    sent_third = [r for r in rows if r.recipient == third and r.status != "skipped"]
    # Four verification emails to the third party, no notice, nothing else.
    assert len(sent_third) == 4, rows
    own_rows = [r for r in rows if r.recipient == own]
    # The owner's own address: welcome + 4 verifications hit the bound of 5; item mail skipped.
    assert sum(r.status != "skipped" for r in own_rows) == 5, own_rows
    assert sum((r.last_error or "").startswith("bound:") for r in own_rows) == 1, own_rows
    assert not [r for r in rows if r.kind == "item_listed" and r.status != "skipped"]
    assert not [r for r in rows if r.kind == "item_listed" and r.recipient == third]
    assert not [r for r in rows if r.kind == "email_changed"]
    assert len(await notifier_mail.to(third)) == 4
