"""Header injection (docs/security.md): no user text can add a header or start the body.

Python's email package before the CVE-2024-6923 fix (3.11.10, 3.12.5) decodes RFC 2047
encoded-words in a header value and writes what they decode to, CR and LF included, as is.
These tests build whole messages from hostile names, flatten them as the SMTP sender does and
parse the bytes back as a mail client would.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from agora_notifier.rendering import (
    Kind,
    Renderer,
    build_message,
    check_headers,
    email_header_fix_missing,
    sender_address,
)
from agora_notifier.smtp import flatten

RECIPIENT = "owner@example.test"
SENDER = "no-reply@agora.test"
#: The headers build_message writes, and no others (multipart: no Content-Transfer-Encoding).
HEADERS = {
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
}
#: Everything str.splitlines() and mail clients may take for the end of a line.
BREAKS = ["\r\n", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
ATTACK = "Reply-To: evil@example.com{br}{br}Reset at http://evil.example"


def _q(text: str) -> str:
    """Encode ``text`` as one Q encoded-word, every byte escaped as an attacker would."""
    return "=?utf-8?q?" + "".join(f"={b:02X}" for b in text.encode()) + "?="


def _b(text: str) -> str:
    return "=?UTF-8?B?" + base64.b64encode(text.encode()).decode() + "?="


def _payloads() -> list[tuple[str, str]]:
    # The audit's own payload, verbatim, then every break in every form.
    cases = [
        (
            "audit",
            "=?utf-8?q?Eve=0D=0AReply-To:_evil@example.com=0D=0A=0D=0A"
            "Reset_at_http://evil.example?=",
        )
    ]
    for br in BREAKS:
        attack = "Eve" + br + ATTACK.format(br=br)
        label = repr(br)
        cases += [
            (f"raw {label}", attack),
            (f"q {label}", _q(attack)),
            (f"b {label}", _b(attack)),
            (f"q inside text {label}", "Eve " + _q(br + ATTACK.format(br=br)) + " Smith"),
        ]
    return cases


PAYLOADS = _payloads()


def _flattened(kind: Kind, *, name: str, item_name: str, sender_name: str) -> EmailMessage:
    context = {
        "name": name,
        "public_url": "http://agora.test",
        "item_name": item_name,
        "price": "1.00",
        "currency": "EUR",
        "item_url": "http://agora.test/items/1",
        "link": "http://agora.test/reset-password?token=t",
        "expires_at": "12:00 UTC",
    }
    rendered = Renderer().render(kind, context)
    msg = build_message(
        rendered,
        sender=sender_address(f'"{sender_name}" <{SENDER}>'),
        recipient=RECIPIENT,
        recipient_name=name,
        message_id="<m@agora.test>",
        event_id=uuid.uuid4(),
        kind=str(kind),
        date=datetime.now(UTC),
    )
    raw, _ = flatten(msg, SENDER, RECIPIENT)
    parsed = message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _assert_intact(parsed: EmailMessage, first_line: str) -> None:
    assert {k.lower() for k in parsed} == HEADERS
    assert len(parsed.keys()) == len(HEADERS)  # no header twice either
    assert parsed["Reply-To"] is None
    assert parsed["Bcc"] is None
    [to] = parsed["To"].addresses
    assert to.addr_spec == RECIPIENT
    [sender] = parsed["From"].addresses
    assert sender.addr_spec == SENDER
    for name, value in parsed.items():
        assert not any(br in str(value) for br in BREAKS), (name, str(value))
        assert "=?" not in str(value), (name, str(value))
    assert not parsed.defects
    body = parsed.get_body(("plain",))
    assert body is not None
    assert body.get_content().startswith(first_line)
    assert parsed.get_body(("html",)) is not None


@pytest.mark.parametrize(("label", "payload"), PAYLOADS, ids=[label for label, _ in PAYLOADS])
def test_user_name_cannot_inject_headers(label: str, payload: str) -> None:
    # The name reaches the To display name, the welcome subject and the body.
    parsed = _flattened(Kind.WELCOME, name=payload, item_name="Lamp", sender_name="Agora")
    _assert_intact(parsed, "Hello ")
    assert parsed["Subject"].startswith("Welcome to Agora, ")


@pytest.mark.parametrize(("label", "payload"), PAYLOADS, ids=[label for label, _ in PAYLOADS])
def test_item_name_cannot_inject_headers(label: str, payload: str) -> None:
    parsed = _flattened(Kind.ITEM_LISTED, name="Owner", item_name=payload, sender_name="Agora")
    _assert_intact(parsed, "Hello Owner,")
    assert parsed["Subject"].startswith('Your item "')


@pytest.mark.parametrize(("label", "payload"), PAYLOADS, ids=[label for label, _ in PAYLOADS])
def test_sender_display_name_cannot_inject_headers(label: str, payload: str) -> None:
    # MAIL_FROM is the operator's, but it is a header like any other. Raw breaks are refused
    # at start-up; encoded ones are neutralised like a user's.
    quoted = payload.replace("\\", "").replace('"', "")
    if label.startswith("raw"):
        with pytest.raises(ValueError, match="one line"):
            sender_address(f'"{quoted}" <{SENDER}>')
        return
    parsed = _flattened(Kind.PASSWORD_RESET, name="Owner", item_name="Lamp", sender_name=quoted)
    _assert_intact(parsed, "Hello Owner,")


def test_an_encoded_word_reads_as_the_text_it_is() -> None:
    parsed = _flattened(
        Kind.WELCOME, name="=?utf-8?q?Eve?= Smith", item_name="Lamp", sender_name="Agora"
    )
    assert parsed["To"].addresses[0].display_name == "= ?utf-8?q?Eve?= Smith"
    assert parsed["Subject"] == "Welcome to Agora, = ?utf-8?q?Eve?= Smith"


def test_ordinary_names_pass_unchanged() -> None:
    parsed = _flattened(
        Kind.ITEM_LISTED, name="Zoë O'Brien = 1?", item_name="Brass lamp (1920)", sender_name="A"
    )
    assert parsed["To"].addresses[0].display_name == "Zoë O'Brien = 1?"
    assert parsed["Subject"] == 'Your item "Brass lamp (1920)" is listed'


@pytest.mark.parametrize(
    "value", ["=?utf-8?q?Eve=0D=0AReply-To:_x@evil.test?=", "=?utf-8?q?Eve=C2=85?=", "a=?b"]
)
def test_check_headers_refuses_what_slipped_past_the_cleaning(value: str) -> None:
    msg = EmailMessage(policy=policy.default)
    msg["Subject"] = value
    with pytest.raises(ValueError, match="Subject"):
        check_headers(msg)


@pytest.mark.parametrize(
    ("version", "missing"),
    [
        ((3, 11, 7), True),
        ((3, 11, 9), True),
        ((3, 11, 10), False),
        ((3, 11, 15), False),
        ((3, 12, 4), True),
        ((3, 12, 5), False),
        ((3, 10, 14), True),
        ((3, 10, 15), False),
        ((3, 13, 0), False),
        ((3, 14, 2), False),
        ((3, 7, 17), True),
    ],
)
def test_email_header_fix_versions(version: tuple[int, int, int], missing: bool) -> None:
    assert email_header_fix_missing(version) is missing
