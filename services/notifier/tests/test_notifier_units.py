"""Unit tests (no I/O): SMTP URLs, error classes, header cleaning, rendering, Message-IDs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest
from agora_contract import FieldChange, ItemUpdated
from agora_notifier.config import NotifierSettings
from agora_notifier.rendering import (
    Kind,
    Renderer,
    build_message,
    clean_header_text,
    message_id,
    sender_address,
)
from agora_notifier.smtp import classify, flatten
from agora_notifier.smtp_url import TlsMode, parse_smtp_url
from agora_notifier.wording import Links, describe_changes
from aiosmtplib.errors import (
    SMTPAuthenticationError,
    SMTPRecipientRefused,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPServerDisconnected,
)
from pydantic import ValidationError


@pytest.mark.parametrize(
    ("url", "host", "port", "tls", "user", "password"),
    [
        ("smtp://127.0.0.1:1025", "127.0.0.1", 1025, TlsMode.NONE, None, None),
        ("smtp://mail.test", "mail.test", 25, TlsMode.NONE, None, None),
        ("smtps://u:p@mail.test", "mail.test", 465, TlsMode.TLS, "u", "p"),
        (
            "smtp+starttls://a%40b:p%3Aw@mail.test:2525",
            "mail.test",
            2525,
            TlsMode.STARTTLS,
            "a@b",
            "p:w",
        ),
    ],
)
def test_smtp_url_parsing(
    url: str, host: str, port: int, tls: TlsMode, user: str | None, password: str | None
) -> None:
    target = parse_smtp_url(url)
    assert (target.host, target.port, target.tls) == (host, port, tls)
    assert (target.username, target.password) == (user, password)
    assert "password" not in repr(target)  # never in logs


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://mail.test", "scheme"),
        ("smtp://", "needs a host"),
        ("smtp://mail.test:99999", "invalid port"),
        ("smtp://:secret@mail.test", "password without a user"),
    ],
)
def test_bad_smtp_url_is_a_clear_error(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_smtp_url(url)
    with pytest.raises(ValidationError, match=message):
        NotifierSettings(smtp_url=url)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "permanent"),
    [
        (SMTPResponseException(451, "try later"), False),
        (SMTPResponseException(550, "no such user"), True),
        (SMTPRecipientsRefused([SMTPRecipientRefused(550, "no", "a@b")]), True),
        (SMTPRecipientsRefused([SMTPRecipientRefused(452, "full", "a@b")]), False),
        (SMTPAuthenticationError(535, "bad credentials"), False),
        (SMTPServerDisconnected("gone"), False),
        (ConnectionRefusedError(111, "refused"), False),
        (TimeoutError(), False),
    ],
)
def test_classify(exc: Exception, permanent: bool) -> None:
    assert classify(exc).permanent is permanent


def test_clean_header_text_flattens_every_line_break() -> None:
    dirty = "Eve\r\nBcc: x@evil.test\u2028Cc: y\u2029\x00\x85\x0b\x0cend\t!"
    assert clean_header_text(dirty) == "Eve Bcc: x@evil.test Cc: y end !"
    assert clean_header_text("x" * 500, limit=10) == "x" * 10


def test_message_id_is_derived_from_event_kind_and_recipient() -> None:
    event = uuid.uuid4()
    one = message_id(event, "welcome", "a@b.test", "agora.test")
    assert one == message_id(event, "welcome", "a@b.test", "agora.test")
    assert one != message_id(event, "welcome", "c@b.test", "agora.test")
    assert one != message_id(event, "goodbye", "a@b.test", "agora.test")
    assert one.startswith(f"<{event}.welcome.")
    assert one.endswith("@agora.test>")


def _message(name: str, recipient: str = "u@example.test") -> bytes:
    rendered = Renderer().render(Kind.WELCOME, {"name": name, "public_url": "http://g.test"})
    msg = build_message(
        rendered,
        sender=sender_address("Agora <no-reply@agora.test>"),
        recipient=recipient,
        recipient_name=name,
        message_id="<m@agora.test>",
        event_id=uuid.uuid4(),
        kind="welcome",
        date=datetime.now(UTC),
    )
    raw, _ = flatten(msg, "no-reply@agora.test", recipient)
    return raw


def test_long_name_with_addresses_stays_one_quoted_display_name() -> None:
    evil = "x-1234567890123456789@evil.test"
    raw = _message(f"Mallory\r\nBcc: {evil}\u2028Cc: {evil}")
    parsed = message_from_bytes(raw, policy=policy.default)
    [to] = parsed["To"].addresses
    assert to.addr_spec == "u@example.test"
    assert to.display_name == f"Mallory Bcc: {evil} Cc: {evil}"
    assert parsed["Bcc"] is None
    assert parsed["Cc"] is None


def test_both_parts_and_escaping() -> None:
    parsed = message_from_bytes(_message("<b>Bo & Co</b>"), policy=policy.default)
    text = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert text is not None
    assert html is not None
    assert "Hello <b>Bo & Co</b>," in text.get_content()
    assert "Hello &lt;b&gt;Bo &amp; Co&lt;/b&gt;," in html.get_content()


def test_address_that_is_not_one_mailbox_is_refused() -> None:
    with pytest.raises(ValueError, match="Invalid addr_spec"):
        _message("Bo", recipient="a@b.test, c@d.test")


def test_every_kind_renders() -> None:
    renderer = Renderer()
    context = {
        "name": "N",
        "public_url": "http://g.test",
        "email": "e@x.test",
        "link": "http://g.test/l",
        "expires_at": "soon",
        "old_email": "o@x.test",
        "new_email": "n@x.test",
        "audience": "old",
        "item_name": "I",
        "price": "1.00",
        "currency": "EUR",
        "item_url": "http://g.test/items/1",
        "changes": [{"label": "Price", "old": "1", "new": "2"}],
        "reason": "owner_request",
        "reason_text": "you deleted it.",
    }
    for kind in Kind:
        rendered = renderer.render(kind, context)
        assert rendered.subject
        assert "Hello N," in rendered.text
        assert "<html" in rendered.html


def test_price_change_shows_old_to_new_with_currency() -> None:
    event = ItemUpdated(
        item_id=1,
        owner_id=1,
        changes={
            "price": FieldChange(old="19.90", new="17.50"),
            "tags": FieldChange(old=["a"], new=[]),
        },
    )
    assert describe_changes(event, "EUR") == [
        {"label": "Price", "old": "19.90 EUR", "new": "17.50 EUR"},
        {"label": "Tags", "old": "a", "new": "(none)"},
    ]


def test_token_links_are_escaped() -> None:
    links = Links("http://g.test/")
    assert (
        links.token("verify-email", "a/b+c=&d")
        == "http://g.test/verify-email?token=a%2Fb%2Bc%3D%26d"
    )


def test_handler_timeout_defaults_above_one_delivery() -> None:
    settings = NotifierSettings()
    one_delivery = (
        settings.smtp_connect_timeout_s + settings.smtp_send_timeout_s + settings.mark_retry_s
    )
    assert settings.consumer_handler_timeout_s >= one_delivery


def test_handler_timeout_shorter_than_one_smtp_send_is_refused_at_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SMTP_URL", "smtp://u:hunter2-password@mail.test")
    monkeypatch.setenv("CONSUMER_HANDLER_TIMEOUT_S", "30")
    monkeypatch.setenv("NOTIFIER_SMTP_CONNECT_TIMEOUT_S", "10")
    monkeypatch.setenv("NOTIFIER_SMTP_SEND_TIMEOUT_S", "20")
    with pytest.raises(ValidationError, match="CONSUMER_HANDLER_TIMEOUT_S") as info:
        NotifierSettings()
    # The error names the bound, and does not echo the environment (the SMTP password).
    assert "40 s" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_handler_timeout_follows_shorter_smtp_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUMER_HANDLER_TIMEOUT_S", "12")
    monkeypatch.setenv("NOTIFIER_SMTP_CONNECT_TIMEOUT_S", "2")
    monkeypatch.setenv("NOTIFIER_SMTP_SEND_TIMEOUT_S", "5")
    monkeypatch.setenv("NOTIFIER_MARK_RETRY_S", "5")
    assert NotifierSettings().consumer_handler_timeout_s == 12
