"""Templates to email: Jinja2 text and HTML parts, a clean subject, a derived Message-ID."""

from __future__ import annotations

import hashlib
import re
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from enum import StrEnum
from typing import Any, Final

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape


class Kind(StrEnum):
    """What an email is; part of its delivery's identity and of its Message-ID."""

    WELCOME = "welcome"
    EMAIL_VERIFICATION = "email_verification"
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a mail kind, not a secret
    EMAIL_CHANGED = "email_changed"
    GOODBYE = "goodbye"
    ITEM_LISTED = "item_listed"
    ITEM_CHANGED = "item_changed"
    ITEM_REMOVED = "item_removed"


#: Item mail honours the recipient's preferences; every other kind always goes.
ITEM_KINDS: Final = frozenset({Kind.ITEM_LISTED, Kind.ITEM_CHANGED, Kind.ITEM_REMOVED})
APP_NAME: Final = "Agora"
MAX_SUBJECT = 200
MAX_NAME = 100

# Everything that could end a header line or hide in one: C0/C1 controls (CR, LF, NUL, VT,
# FF, NEL...), DEL, and the Unicode line and paragraph separators.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(r"\s+")
# RFC 2047 encoded-words open with "=?". The email package decodes them when a header is set
# and, before CVE-2024-6923 was fixed (3.11.10, 3.12.5...), writes what they decode to (CR,
# LF, ...) unescaped: "=?utf-8?q?Eve=0D=0AReply-To:...?=" became a header of its own.
_ENCODED_WORD_OPEN = "=?"
# Folding as the SMTP sender does (no wrapping; see smtp.py) and what a fold may not contain.
_FOLD: Final = policy.SMTP.clone(max_line_length=998)
_BARE_BREAK = re.compile(r"\r\n(?![ \t])|\r(?!\n)|(?<!\r)\n|[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def clean_header_text(value: str, *, limit: int = MAX_SUBJECT) -> str:
    """Return ``value`` on one line: control characters and line separators become spaces."""
    flat = _SPACES.sub(" ", _UNSAFE.sub(" ", value)).strip()
    return flat[:limit].rstrip()


def header_text(value: str, *, limit: int = MAX_SUBJECT) -> str:
    """Return ``value`` fit for a header: one line, and no "=?" a parser could decode."""
    # "= ?" cannot open an encoded-word, and the replacement cannot create a new "=?".
    return clean_header_text(value, limit=limit).replace(_ENCODED_WORD_OPEN, "= ?")


def check_headers(msg: EmailMessage) -> None:
    """Raise ValueError if a header holds a control, "=?", or would be written as two lines."""
    for name, value in msg.items():
        if _UNSAFE.search(str(value)) or _ENCODED_WORD_OPEN in str(value):
            raise ValueError(f"the {name} header holds a control character or an encoded-word")
        # What the generator will write: a line break inside it must be a fold (CRLF + space).
        folded = _FOLD.fold(name, value).removesuffix("\r\n")
        if _BARE_BREAK.search(folded):
            raise ValueError(f"the {name} header would be written as more than one header")


#: The first release of each Python line whose email package encodes line breaks decoded from
#: encoded-words (CVE-2024-6923, gh-121650); 3.13.0 and later have it.
EMAIL_HEADER_FIX: Final = {(3, 8): 20, (3, 9): 20, (3, 10): 15, (3, 11): 10, (3, 12): 5}


def email_header_fix_missing(version: tuple[int, int, int] | None = None) -> bool:
    """True on a Python whose email package lets decoded encoded-words break header lines."""
    major, minor, micro = version or sys.version_info[:3]
    if (major, minor) >= (3, 13):
        return False
    fixed = EMAIL_HEADER_FIX.get((major, minor))
    return fixed is None or micro < fixed


def message_id(event_id: uuid.UUID, kind: str, recipient: str, domain: str) -> str:
    """Derive the Message-ID of (event id, kind, recipient): a resend carries the same one."""
    digest = hashlib.sha256(f"{event_id}|{kind}|{recipient}".encode()).hexdigest()[:20]
    return f"<{event_id}.{kind}.{digest}@{domain}>"


def normalise_address(address: str) -> str:
    """Return the form an address is stored and deduplicated under (trimmed, lower case)."""
    return address.strip().lower()


@dataclass(frozen=True, slots=True)
class Rendered:
    """The subject and both parts of one email."""

    subject: str
    text: str
    html: str


class Renderer:
    """Renders the packaged templates; HTML is autoescaped, undefined variables are errors."""

    def __init__(self) -> None:
        self._env = Environment(
            loader=PackageLoader("agora_notifier", "templates"),
            # Only .html is escaped: the text part and the subject are not HTML.
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
        )

    def render(self, kind: Kind, context: Mapping[str, Any]) -> Rendered:
        """Render ``kind`` with ``context`` (plus the app name)."""
        values = {"app_name": APP_NAME, **context}
        subject = header_text(self._env.get_template(f"{kind}.subject.txt").render(values))
        values["subject"] = subject
        text = self._env.get_template(f"{kind}.txt").render(values)
        html = self._env.get_template(f"{kind}.html").render(values)
        return Rendered(subject=subject, text=text, html=html)


def sender_address(mail_from: str) -> Address:
    """Parse the ``From`` setting (``Name <addr>`` or ``addr``); ValueError if unusable."""
    if _UNSAFE.search(mail_from):
        # parseaddr reads "A\r\nReply-To: x@evil.test" <a@b> as the address x@evil.test.
        raise ValueError("mail_from must be one line without control characters")
    name, addr = parseaddr(mail_from)
    if "@" not in addr:
        raise ValueError(f"mail_from {mail_from!r} is not an email address")
    return Address(display_name=header_text(name, limit=MAX_NAME), addr_spec=addr)


def build_message(
    rendered: Rendered,
    *,
    sender: Address,
    recipient: str,
    recipient_name: str | None,
    message_id: str,
    event_id: uuid.UUID,
    kind: str,
    date: datetime,
) -> EmailMessage:
    """Build the MIME message (text, then HTML alternative); ValueError for a bad address.

    Every text that reaches a header passes ``header_text``, so no Python version can decode
    it into a second line; ``check_headers`` refuses the message if one still would.
    """
    msg = EmailMessage(policy=policy.default)
    msg["From"] = sender
    # Address() refuses an addr_spec that is not one address (no smuggled recipients), and
    # one holding an encoded-word (a defect, which is a ValueError).
    msg["To"] = Address(
        display_name=header_text(recipient_name or "", limit=MAX_NAME), addr_spec=recipient
    )
    msg["Subject"] = header_text(rendered.subject)
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id
    # RFC 3834: tells autoresponders not to answer.
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Agora-Event-Id"] = str(event_id)
    msg["X-Agora-Kind"] = kind
    check_headers(msg)
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    return msg
