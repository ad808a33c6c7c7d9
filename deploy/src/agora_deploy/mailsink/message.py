"""One stored message, as the Mailpit-compatible API shows it."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from agora_deploy.mailsink.mime import Address, Parsed, parse

log = logging.getLogger("agora_deploy.mailsink")


def rfc3339(moment: datetime) -> str:
    """Format a time as RFC 3339 with milliseconds, 'Z' for UTC, as Mailpit's JSON does."""
    text = moment.isoformat(timespec="milliseconds")
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


@dataclass(slots=True)
class StoredMessage:
    """One received message: the raw bytes as stored, the SMTP envelope, and its decoded summary."""

    id: str
    raw: bytes
    created_at: datetime
    envelope_from: str
    envelope_recipients: tuple[str, ...]
    username: str
    read: bool = False
    #: The decoded message, made on first use (messages loaded from disk are decoded lazily).
    decoded: Parsed | None = field(default=None, repr=False, compare=False)

    @property
    def parsed(self) -> Parsed:
        """Return the decoded message."""
        if self.decoded is None:
            self.decoded = _parse_or_blank(self.raw)
        return self.decoded

    @property
    def subject(self) -> str:
        """Return the decoded Subject header."""
        return self.parsed.subject

    @property
    def message_id(self) -> str:
        """Return the Message-ID header without angle brackets."""
        return self.parsed.message_id

    @property
    def size(self) -> int:
        """Return the size of the stored message in bytes."""
        return len(self.raw)

    def addresses(self, *fields: str) -> Iterator[Address]:
        """Yield the addresses of the named header fields (From, To, Cc, Bcc, Reply-To)."""
        p = self.parsed
        table: dict[str, Sequence[Address]] = {
            "from": (p.sender,) if p.sender is not None else (),
            "to": p.to,
            "cc": p.cc,
            "bcc": p.bcc,
            "reply-to": p.reply_to,
        }
        for name in fields:
            yield from table[name.lower()]

    def summary_json(self) -> dict[str, object]:
        """Return Mailpit's MessageSummary for the message list."""
        p = self.parsed
        return {
            "ID": self.id,
            "MessageID": p.message_id,
            "Read": self.read,
            "From": _sender_json(p.sender),
            "To": [a.to_json() for a in p.to],
            "Cc": [a.to_json() for a in p.cc],
            "Bcc": [a.to_json() for a in p.bcc],
            "ReplyTo": [a.to_json() for a in p.reply_to],
            "Subject": p.subject,
            "Created": rfc3339(self.created_at),
            "Username": self.username,
            "Tags": [],
            "Size": self.size,
            "Attachments": len(p.attachments),
            "Snippet": p.snippet,
        }

    def detail_json(self) -> dict[str, object]:
        """Return Mailpit's Message for GET /api/v1/message/{ID}."""
        p = self.parsed
        return {
            "ID": self.id,
            "MessageID": p.message_id,
            "From": _sender_json(p.sender),
            "To": [a.to_json() for a in p.to],
            "Cc": [a.to_json() for a in p.cc],
            "Bcc": [a.to_json() for a in p.bcc],
            "ReplyTo": [a.to_json() for a in p.reply_to],
            "ReturnPath": p.return_path,
            "Subject": p.subject,
            "Date": rfc3339(p.date if p.date is not None else self.created_at),
            "Tags": [],
            "Username": self.username,
            "Text": p.text,
            "HTML": p.html,
            "Size": self.size,
            "Inline": [part.to_json() for part in p.inline],
            "Attachments": [part.to_json() for part in p.attachments],
        }


def _parse_or_blank(raw: bytes) -> Parsed:
    try:
        return parse(raw)
    except Exception:
        # Keep the message (raw and headers stay readable) rather than refuse it.
        log.exception("could not decode a received message; storing it undecoded")
        return Parsed(
            message_id="",
            sender=None,
            to=(),
            cc=(),
            bcc=(),
            reply_to=(),
            return_path="",
            subject="",
            date=None,
            text="",
            html="",
            inline=(),
            attachments=(),
        )


def _sender_json(sender: Address | None) -> dict[str, str]:
    return (sender or Address(name="", address="")).to_json()
