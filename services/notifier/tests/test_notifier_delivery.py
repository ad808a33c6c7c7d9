"""Effectively once, and failures that never block other mail (real broker, SMTP, Postgres)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import httpx
import pytest
import sqlalchemy.exc
from agora_contract import (
    Envelope,
    ItemCreated,
    SendPasswordReset,
    UserEmailChanged,
    UserRegistered,
)
from agora_kit.testing.jwt import JwtKeyring
from agora_kit.testing.mail import ChaosUnsupportedError, MailApi
from agora_kit.testing.poll import eventually
from agora_notifier.config import NotifierSettings
from agora_notifier.testing import Publisher
from fastapi import FastAPI
from sqlalchemy import text

NewUser = Callable[[], tuple[int, str]]


def registered(user_id: int, email: str, name: str = "Ann") -> UserRegistered:
    """A registration event."""
    return UserRegistered(user_id=user_id, email=email, name=name, registered_at=datetime.now(UTC))


def listed(item_id: int, owner_id: int) -> ItemCreated:
    """An item-created event."""
    return ItemCreated(
        item_id=item_id,
        owner_id=owner_id,
        name="Kettle",
        description=None,
        price=Decimal("12.00"),
        currency="EUR",
        tags=[],
        status="active",
    )


def auth(keyring: JwtKeyring, user_id: int, *, admin: bool = False) -> dict[str, str]:
    """Authorization header of a valid access token."""
    token = keyring.token(user_id, roles=["admin"] if admin else [])
    return {"Authorization": f"Bearer {token}"}


async def deliveries(
    client: httpx.AsyncClient, keyring: JwtKeyring, user_id: int
) -> list[dict[str, Any]]:
    """The user's deliveries through the API."""
    response = await client.get("/api/v1/notifications", headers=auth(keyring, user_id))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def emails(app: FastAPI, outcome: str) -> float:
    """``agora_notifier_emails_total{outcome}`` on the app's registry."""
    value = app.state.ctx.registry.get_sample_value(
        "agora_notifier_emails_total", {"outcome": outcome}
    )
    assert value is not None, outcome
    return float(value)


async def dead_letter_for(
    client: httpx.AsyncClient, keyring: JwtKeyring, event_id: UUID
) -> dict[str, Any] | None:
    """The pending dead letter of ``event_id``, if any (admin API)."""
    response = await client.get(
        "/api/v1/notifications/dead-letters",
        params={"status": "pending", "limit": 200},
        headers=auth(keyring, 1, admin=True),
    )
    assert response.status_code == 200, response.text
    return next((d for d in response.json()["items"] if d["event_id"] == str(event_id)), None)


@pytest.mark.asyncio
async def test_same_event_twice_gives_one_email(
    notifier_app: FastAPI,
    notifier_publish: Publisher,
    notifier_mail: MailApi,
    notifier_new_user: NewUser,
) -> None:
    user_id, email = notifier_new_user()
    _, new_email = notifier_new_user()
    envelope = Envelope.wrap(registered(user_id, email), aggregateversion=1)
    topic = notifier_publish.settings.users_topic
    await notifier_publish.envelope(envelope, topic)
    await notifier_publish.envelope(envelope, topic)
    # Same key, same partition, so handled after both copies: once it is out, they were too.
    await notifier_publish.verified(user_id, aggregateversion=2)
    await notifier_publish.event(
        UserEmailChanged(user_id=user_id, old_email=email, new_email=new_email),
        aggregateversion=3,
    )
    mails = await notifier_mail.wait_for(email, count=2)
    kinds = sorted(m.headers["X-Agora-Kind"][0] for m in mails)
    assert kinds == ["email_changed", "welcome"]
    async with notifier_app.state.ctx.engine.connect() as conn:
        count = (
            await conn.execute(
                text("SELECT count(*) FROM delivery WHERE event_id = :e"), {"e": envelope.id}
            )
        ).scalar_one()
    assert count == 1


@pytest.mark.asyncio
async def test_header_injection_in_name_sends_nothing_to_the_smuggled_address(
    notifier_app: FastAPI,
    notifier_publish: Publisher,
    notifier_mail: MailApi,
    notifier_new_user: NewUser,
) -> None:
    user_id, email = notifier_new_user()
    evil = f"x-{user_id}@evil.test"
    name = f"Mallory\r\nBcc: {evil}\u2028Cc: {evil}\x00"
    await notifier_publish.event(registered(user_id, email, name=name))
    [mail] = await notifier_mail.wait_for(email)
    assert mail.to == [email], mail.summary
    assert "Bcc" not in mail.headers
    assert "Cc" not in mail.headers
    assert mail.subject == f"Welcome to Agora, Mallory Bcc: {evil} Cc: {evil}"
    assert await notifier_mail.to(evil) == []
    assert mail.summary["To"][0]["Name"] == f"Mallory Bcc: {evil} Cc: {evil}"


@pytest.mark.asyncio
async def test_opted_out_item_mail_is_recorded_as_skipped(
    notifier_app: FastAPI,
    notifier_client: httpx.AsyncClient,
    jwt_keyring: JwtKeyring,
    notifier_publish: Publisher,
    notifier_mail: MailApi,
    notifier_new_user: NewUser,
) -> None:
    user_id, email = notifier_new_user()
    headers = auth(jwt_keyring, user_id)
    before = await notifier_client.get("/api/v1/notifications/preferences", headers=headers)
    assert before.json() == {"item_mail": True, "security_mail": True}
    put = await notifier_client.put(
        "/api/v1/notifications/preferences", json={"item_mail": False}, headers=headers
    )
    assert put.status_code == 200
    assert put.json()["item_mail"] is False
    await notifier_publish.event(registered(user_id, email))
    await notifier_publish.verified(user_id)
    await notifier_mail.wait_for(email)
    item = await notifier_publish.event(listed(user_id, user_id))

    async def skipped() -> dict[str, Any] | None:
        rows = await deliveries(notifier_client, jwt_keyring, user_id)
        return next((r for r in rows if r["event_id"] == str(item.id)), None)

    row = await eventually(skipped)
    assert row["status"] == "skipped"
    assert row["kind"] == "item_listed"
    assert row["error"] == "opted out of item mail"
    # Security mail ignores the preference.
    reset = SendPasswordReset(
        user_id=user_id, email=email, name="Ann", token="t", expires_at=datetime.now(UTC)
    )
    await notifier_publish.event(reset)
    mails = await notifier_mail.wait_for(email, count=2)
    assert sorted(m.headers["X-Agora-Kind"][0] for m in mails) == ["password_reset", "welcome"]


@pytest.mark.asyncio
async def test_item_event_before_its_owner_is_retried_not_dropped(
    notifier_app: FastAPI,
    notifier_publish: Publisher,
    notifier_mail: MailApi,
    notifier_new_user: NewUser,
) -> None:
    user_id, email = notifier_new_user()
    item = await notifier_publish.event(listed(user_id, user_id))
    await notifier_publish.event(registered(user_id, email))
    await notifier_publish.verified(user_id)
    mails = await notifier_mail.wait_for(email, count=2)
    item_mail = next(m for m in mails if m.headers["X-Agora-Kind"] == ["item_listed"])
    assert item_mail.headers["X-Agora-Event-Id"] == [str(item.id)]


@pytest.mark.asyncio
async def test_poison_messages_become_dead_letters_and_the_next_event_flows(
    notifier_app: FastAPI,
    notifier_client: httpx.AsyncClient,
    jwt_keyring: JwtKeyring,
    notifier_publish: Publisher,
    notifier_mail: MailApi,
    notifier_new_user: NewUser,
) -> None:
    user_id, email = notifier_new_user()
    topic = notifier_publish.settings.users_topic
    key = str(user_id).encode()
    await notifier_publish.raw(topic, key, b"{not json")
    unknown = Envelope.wrap(registered(user_id, email)).model_copy(
        update={"type": "agora.users.user.teleported.v1"}
    )
    await notifier_publish.raw(topic, key, unknown.to_bytes())
    invalid = Envelope.wrap(registered(user_id, email)).model_copy(
        update={"data": {"user_id": user_id, "email": "not-an-address"}}
    )
    await notifier_publish.raw(topic, key, invalid.to_bytes())
    await notifier_publish.event(registered(user_id, email))
    await notifier_mail.wait_for(email)

    admin = auth(jwt_keyring, 1, admin=True)
    response = await notifier_client.get(
        "/api/v1/notifications/dead-letters", params={"limit": 200}, headers=admin
    )
    letters = [d for d in response.json()["items"] if d["key"] == str(user_id)]
    assert sorted(d["error_kind"] for d in letters) == ["invalid", "malformed", "unknown_type"]
    malformed = next(d for d in letters if d["error_kind"] == "malformed")
    shown = await notifier_client.get(
        f"/api/v1/notifications/dead-letters/{malformed['id']}", headers=admin
    )
    assert shown.json()["value"] == "{not json"


@pytest.mark.asyncio
async def test_550_makes_a_dead_letter_and_replay_delivers_once(
    notifier_app: FastAPI,
    notifier_client: httpx.AsyncClient,
    jwt_keyring: JwtKeyring,
    notifier_publish: Publisher,
    notifier_mail: MailApi,
    notifier_new_user: NewUser,
    notifier_settings: NotifierSettings,
) -> None:
    user_id, email = notifier_new_user()
    failed_before, sent_before = emails(notifier_app, "failed"), emails(notifier_app, "sent")
    async with notifier_mail.chaos("Recipient", 550):
        event = await notifier_publish.event(registered(user_id, email))
        letter = await eventually(lambda: dead_letter_for(notifier_client, jwt_keyring, event.id))
    assert emails(notifier_app, "failed") >= failed_before + 1
    assert letter["error_kind"] == "permanent"
    assert "550" in letter["error"]
    [row] = await deliveries(notifier_client, jwt_keyring, user_id)
    assert row["status"] == "failed"
    assert await notifier_mail.to(email) == []

    admin = auth(jwt_keyring, 1, admin=True)
    replay = await notifier_client.post(
        f"/api/v1/notifications/dead-letters/{letter['id']}/replay", headers=admin
    )
    assert replay.status_code == 200, replay.text
    assert replay.json()["status"] == "replayed"
    again = await notifier_client.post(
        f"/api/v1/notifications/dead-letters/{letter['id']}/replay", headers=admin
    )
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    [mail] = await notifier_mail.wait_for(email)
    assert mail.headers["X-Agora-Event-Id"] == [str(event.id)]

    async def sent() -> bool:
        [current] = await deliveries(notifier_client, jwt_keyring, user_id)
        return bool(current["status"] == "sent")

    await eventually(sent)
    assert emails(notifier_app, "sent") >= sent_before + 1
    # The outcome events went out through the outbox and the relay.
    async with notifier_app.state.ctx.engine.connect() as conn:

        async def published() -> list[Any]:
            rows = (
                await conn.execute(
                    text(
                        "SELECT convert_from(value, 'UTF8')::jsonb ->> 'type' AS type FROM outbox "
                        "WHERE topic = 'notifications.events' AND published_at IS NOT NULL "
                        "AND convert_from(value, 'UTF8')::jsonb -> 'data' ->> 'user_id' = :u"
                    ),
                    {"u": str(user_id)},
                )
            ).all()
            await conn.commit()
            types = sorted(r.type for r in rows)
            return types if len(types) == 2 else []

        types = await eventually(published)
    assert types == ["agora.notifier.notification.failed.v1", "agora.notifier.notification.sent.v1"]
    assert len(await notifier_mail.to(email)) == 1


@pytest.mark.asyncio
async def test_451_delays_mail_without_losing_it_and_blocks_no_one(
    notifier_app: FastAPI,
    notifier_client: httpx.AsyncClient,
    jwt_keyring: JwtKeyring,
    notifier_publish: Publisher,
    notifier_mail: MailApi,
    notifier_new_user: NewUser,
) -> None:
    first_id, first = notifier_new_user()
    second_id, second = notifier_new_user()

    async def delivery(user_id: int, status: str, *, min_attempts: int = 1) -> Any:
        rows = await deliveries(notifier_client, jwt_keyring, user_id)
        if len(rows) == 1 and rows[0]["status"] == status and rows[0]["attempts"] >= min_attempts:
            return rows[0]
        return None

    try:
        # Only the first recipient's RCPT TO gets 451 (the embedded sink's Addresses extension).
        async with notifier_mail.chaos("Recipient", 451, addresses=[first]):
            await notifier_publish.event(registered(first_id, first))
            await eventually(lambda: delivery(first_id, "retrying", min_attempts=2))
            # The second, published while the first keeps failing, is delivered all the same.
            await notifier_publish.event(registered(second_id, second))
            [mail_second] = await notifier_mail.wait_for(second, timeout_s=15)
            assert mail_second.to == [second]
            sent_second = await eventually(lambda: delivery(second_id, "sent"))
            assert sent_second["attempts"] == 1
            # ... while the first is still undelivered and still being retried.
            assert await notifier_mail.to(first) == []
            [row] = await deliveries(notifier_client, jwt_keyring, first_id)
            assert row["status"] in {"retrying", "sending"}, row
            assert "451" in (row["error"] or ""), row
            await eventually(
                lambda: delivery(first_id, "retrying", min_attempts=row["attempts"] + 1)
            )
            assert await notifier_mail.to(first) == []
    except ChaosUnsupportedError as exc:
        pytest.skip(f"needs the embedded mail sink: {exc}")
    finally:
        await notifier_mail.set_chaos({})

    # The fault is gone: the first gets its mail, once; the second got exactly one.
    [mail_first] = await notifier_mail.wait_for(first, timeout_s=15)
    assert mail_first.to == [first]
    sent_first = await eventually(lambda: delivery(first_id, "sent", min_attempts=3))
    assert sent_first["error"] is None
    assert len(await notifier_mail.to(first)) == 1
    assert len(await notifier_mail.to(second)) == 1


@pytest.mark.asyncio
async def test_database_blip_on_the_sent_mark_is_retried_not_resent(
    notifier_app: FastAPI,
    notifier_publish: Publisher,
    notifier_mail: MailApi,
    notifier_new_user: NewUser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user_id, email = notifier_new_user()
    postman = notifier_app.state.ctx.runtime.postman
    real_mark = postman._after_success
    calls: list[str] = []

    async def flaky_mark(row: Any) -> None:
        calls.append(row.recipient)
        if row.recipient == email and calls.count(email) == 1:
            # What SQLAlchemy raises when the connection drops under the UPDATE.
            raise sqlalchemy.exc.OperationalError(
                "UPDATE delivery SET status=...", None, ConnectionResetError("connection reset")
            )
        await real_mark(row)

    monkeypatch.setattr(postman, "_after_success", flaky_mark)
    envelope = await notifier_publish.event(registered(user_id, email), aggregateversion=1)
    await notifier_mail.wait_for(email)

    async def row() -> Any:
        async with notifier_app.state.ctx.engine.connect() as conn:
            found = (
                await conn.execute(
                    text("SELECT status, attempts FROM delivery WHERE event_id = :e"),
                    {"e": envelope.id},
                )
            ).one_or_none()
        return found if found is not None and found.status == "sent" else None

    # Marked within the retry budget, by the same attempt: without the retry the row would
    # stay "sending" until the 60 s lease ran out, and the email would then go again.
    sent = await eventually(row, timeout_s=10)
    assert sent.attempts == 1
    assert calls.count(email) == 2
    assert len(await notifier_mail.to(email)) == 1
