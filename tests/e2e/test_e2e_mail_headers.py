"""End to end: a hostile user or item name cannot add a header to, or write the body of, a mail.

The audit's payload (docs/security.md, header injection) goes in through the users and items
APIs; the mails come out of the sink byte for byte and are parsed as a mail client would.
"""

from __future__ import annotations

import uuid
from email import message_from_bytes, policy
from email.message import EmailMessage

import httpx
from agora_deploy.testing import verify_address
from agora_kit.testing.mail import MailClient

EVIL = "=?utf-8?q?Eve=0D=0AReply-To:_evil@example.com=0D=0A=0D=0AReset_at_http://evil.example?="


def _received(mail: MailClient, address: str, count: int) -> list[EmailMessage]:
    # By count, not subject: an injected header can cut the Subject line short.
    found = mail.wait(lambda ms: len(ms) >= count, address=address)
    parsed = [message_from_bytes(mail.raw(str(m["ID"])), policy=policy.default) for m in found]
    assert all(isinstance(p, EmailMessage) for p in parsed)
    return parsed


def _assert_intact(parsed: EmailMessage, address: str) -> None:
    assert parsed["Reply-To"] is None
    assert not [k for k in parsed if k.lower() not in KNOWN], list(parsed)
    [to] = parsed["To"].addresses
    assert to.addr_spec == address
    for name, value in parsed.items():
        assert "\n" not in str(value), name
        assert "\r" not in str(value), name
    body = parsed.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert text.startswith("Hello "), text[:80]
    assert not text.startswith("Reset at")


KNOWN = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "auto-submitted",
    "x-agora-event-id",
    "x-agora-kind",
    "mime-version",
    "content-type",
    "return-path",  # the sink adds it on receipt, as Mailpit does
}


def test_hostile_names_stay_inside_their_headers(gateway: httpx.Client, mail: MailClient) -> None:
    email = f"e2e-{uuid.uuid4().hex[:10]}@example.com"
    password = f"pw-{uuid.uuid4().hex}"
    created = gateway.post(
        "/api/v1/users", json={"email": email, "name": EVIL, "password": password}
    )
    assert created.status_code == 201, created.text
    first = _received(mail, email, 2)  # welcome and email verification
    for message in first:
        _assert_intact(message, email)
    assert {str(m["X-Agora-Kind"]) for m in first} == {"welcome", "email_verification"}
    verify_address(gateway, mail, email)  # item mail goes to verified addresses only

    token = gateway.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": email, "password": password},
    )
    assert token.status_code == 200, token.text
    auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
    item = gateway.post(
        "/api/v1/items", json={"name": EVIL, "price": "1.00", "tags": []}, headers=auth
    )
    assert item.status_code == 201, item.text
    messages = _received(mail, email, 3)
    for message in messages:
        _assert_intact(message, email)
    [listed] = [m for m in messages if str(m["X-Agora-Kind"]) == "item_listed"]
    assert str(listed["Subject"]).startswith('Your item "= ?utf-8?q?Eve')
