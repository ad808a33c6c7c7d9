"""The pooled aiosmtplib sender against the real mail sink: auth, reuse, failures."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from urllib.parse import urlsplit

import pytest
from agora_deploy.launchers.process import free_port
from agora_deploy.testing import MailSinkHandle
from agora_kit.testing.mail import MailApi
from agora_notifier.rendering import Kind, Renderer, build_message, sender_address
from agora_notifier.smtp import SendError, SmtpSender
from agora_notifier.smtp_url import parse_smtp_url


def _message(to: str) -> EmailMessage:
    rendered = Renderer().render(Kind.WELCOME, {"name": "Sam", "public_url": "http://g.test"})
    return build_message(
        rendered,
        sender=sender_address("Agora <no-reply@agora.test>"),
        recipient=to,
        recipient_name="Sam",
        message_id=f"<{uuid.uuid4()}@agora.test>",
        event_id=uuid.uuid4(),
        kind="welcome",
        date=datetime.now(UTC),
    )


@pytest.mark.asyncio
async def test_pool_authenticates_and_reuses_connections(
    mail_sink: MailSinkHandle, notifier_mail: MailApi
) -> None:
    sink = urlsplit(mail_sink.smtp_url)
    target = parse_smtp_url(f"smtp://agora%40ops:s3cret@{sink.hostname}:{sink.port}")
    sender = SmtpSender(target, pool_size=2, connect_timeout_s=5, send_timeout_s=5)
    recipients = [f"pool-{uuid.uuid4().hex[:12]}@example.test" for _ in range(5)]
    try:
        await asyncio.gather(
            *(
                sender.send(_message(r), sender="no-reply@agora.test", recipient=r)
                for r in recipients
            )
        )
        assert len(sender._idle) <= 2  # never more connections than the pool size
    finally:
        await sender.close()
    for recipient in recipients:
        [mail] = await notifier_mail.wait_for(recipient, timeout_s=10)
        assert mail.to == [recipient]
        [summary] = await notifier_mail.to(recipient)
        assert summary["Username"] == "agora@ops"  # AUTH used the URL's percent-decoded user


@pytest.mark.asyncio
async def test_unreachable_server_is_a_transient_send_error() -> None:
    target = parse_smtp_url(f"smtp://127.0.0.1:{free_port()}")
    sender = SmtpSender(target, pool_size=1, connect_timeout_s=2, send_timeout_s=2)
    try:
        with pytest.raises(SendError) as caught:
            await sender.send(
                _message("x@example.test"),
                sender="no-reply@agora.test",
                recipient="x@example.test",
            )
        assert caught.value.permanent is False
    finally:
        await sender.close()
