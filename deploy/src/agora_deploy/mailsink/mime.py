"""Reading stored messages the way Mailpit presents them: addresses, bodies, headers, parts."""

from __future__ import annotations

import email
import hashlib
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import AddressHeader
from email.message import EmailMessage, Message
from email.utils import getaddresses, parsedate_to_datetime

from agora_deploy.mailsink.text import (
    _WHITESPACE,
    html_to_text,
)

SNIPPET_LENGTH = 200
"""Mailpit cuts snippets at 200 characters and appends an ellipsis."""

# The stdlib's structured header parser can fail on hostile input with almost any exception
# type (AttributeError and IndexError included); a mail sink must still store the message.
_PARSE_ERRORS = (Exception,)

_BASE57 = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


@dataclass(frozen=True, slots=True)
class Address:
    """One mailbox: a display name (possibly empty) and an address."""

    name: str
    address: str

    def to_json(self) -> dict[str, str]:
        """Return Mailpit's JSON form of an address."""
        return {"Name": self.name, "Address": self.address}

    def matches(self, needle: str) -> bool:
        """Tell whether a lower-case needle occurs in the name or the address."""
        return needle in self.name.lower() or needle in self.address.lower()


@dataclass(frozen=True, slots=True)
class Part:
    """A non-body MIME part: an attachment or an inline resource."""

    part_id: str
    file_name: str
    content_type: str
    content_id: str
    disposition: str
    content: bytes

    def to_json(self) -> dict[str, object]:
        """Return Mailpit's JSON form of an attachment."""
        data = self.content
        return {
            "PartID": self.part_id,
            "FileName": self.file_name,
            "ContentType": self.content_type,
            "ContentID": self.content_id,
            "Size": len(data),
            "Checksums": {
                "MD5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
                "SHA1": hashlib.sha1(data, usedforsecurity=False).hexdigest(),
                "SHA256": hashlib.sha256(data).hexdigest(),
            },
        }


@dataclass(frozen=True, slots=True)
class Parsed:
    """What one raw message says about itself once decoded."""

    message_id: str
    sender: Address | None
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    bcc: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    return_path: str
    subject: str
    date: datetime | None
    text: str
    html: str
    inline: tuple[Part, ...]
    attachments: tuple[Part, ...]

    @property
    def snippet(self) -> str:
        """Return the first 200 characters of the HTML (as text) or else the text body."""
        source = html_to_text(self.html) if self.html.strip() else self.text
        flat = _WHITESPACE.sub(" ", source.replace("\ufeff", " ")).strip()
        return flat if len(flat) <= SNIPPET_LENGTH else flat[:SNIPPET_LENGTH] + "..."


def new_id() -> str:
    """Return a random 22-character id in the alphabet Mailpit's short UUIDs use."""
    value = secrets.randbits(128)
    chars = []
    for _ in range(22):
        value, digit = divmod(value, len(_BASE57))
        chars.append(_BASE57[digit])
    return "".join(chars)


def parse(raw: bytes) -> Parsed:
    """Decode a raw RFC 5322 message: addresses, encoded words, charsets, MIME bodies."""
    msg = email.message_from_bytes(raw, _class=EmailMessage, policy=policy.default)
    text_part = _body_part(msg, "plain")
    html_part = _body_part(msg, "html")
    html = _text_content(html_part) if html_part is not None else ""
    text = _text_content(text_part) if text_part is not None else html_to_text(html)
    inline: list[Part] = []
    attachments: list[Part] = []
    for part in _other_parts(msg, exclude=(text_part, html_part)):
        (attachments if part.disposition == "attachment" else inline).append(part)
    senders = _addresses(msg, "From")
    if senders:
        sender: Address | None = senders[0]
    else:
        from_value = _header_str(msg, "From")
        sender = Address(name=from_value, address="") if from_value else None
    return_path = _header_str(msg, "Return-Path").strip("<> ")
    if not return_path and sender is not None:
        return_path = sender.address
    return Parsed(
        message_id=_header_str(msg, "Message-ID").strip().strip("<>"),
        sender=sender,
        to=_addresses(msg, "To"),
        cc=_addresses(msg, "Cc"),
        bcc=_addresses(msg, "Bcc"),
        reply_to=_addresses(msg, "Reply-To"),
        return_path=return_path,
        subject=_header_str(msg, "Subject"),
        date=_date(msg),
        text=text,
        html=html,
        inline=tuple(inline),
        attachments=tuple(attachments),
    )


def find_part(raw: bytes, part_id: str) -> Part | None:
    """Return the attachment or inline part with this PartID, if there is one."""
    msg = email.message_from_bytes(raw, _class=EmailMessage, policy=policy.default)
    exclude = (_body_part(msg, "plain"), _body_part(msg, "html"))
    for part in _other_parts(msg, exclude=exclude):
        if part.part_id == part_id:
            return part
    return None


def _header_str(msg: Message, name: str) -> str:
    try:
        value = msg.get(name)
    except _PARSE_ERRORS:
        # A header too broken for the structured parser: fall back to its raw text.
        raw = [v for k, v in msg.raw_items() if k.lower() == name.lower()]
        value = raw[0] if raw else None
    return "" if value is None else str(value)


def _addresses(msg: Message, name: str) -> tuple[Address, ...]:
    result: list[Address] = []
    headers: list[object]
    try:
        headers = list(msg.get_all(name) or [])
    except _PARSE_ERRORS:
        headers = [v for k, v in msg.raw_items() if k.lower() == name.lower()]
    for header in headers:
        if isinstance(header, AddressHeader):
            try:
                result.extend(
                    Address(name=a.display_name, address=a.addr_spec)
                    for a in header.addresses
                    if a.addr_spec
                )
                continue
            except _PARSE_ERRORS:
                pass
        try:
            pairs = getaddresses([str(header)])
        except _PARSE_ERRORS:
            continue
        result.extend(Address(name=n, address=a) for n, a in pairs if a or n)
    return tuple(result)


def _date(msg: Message) -> datetime | None:
    value = _header_str(msg, "Date")
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except _PARSE_ERRORS:
        return None


def _body_part(msg: EmailMessage, subtype: str) -> EmailMessage | None:
    try:
        part = msg.get_body(preferencelist=(subtype,))
    except _PARSE_ERRORS:
        return None
    if part is None or part.get_content_subtype() != subtype:
        return None
    return part if isinstance(part, EmailMessage) else None


def _text_content(part: EmailMessage) -> str:
    try:
        content = part.get_content()
    except _PARSE_ERRORS:
        content = None
    if not isinstance(content, str):
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else ""
    # SMTP delivers CRLF; readers of the API compare text, so give them plain newlines.
    return content.replace("\r\n", "\n")


def _other_parts(msg: EmailMessage, *, exclude: Iterable[EmailMessage | None]) -> Iterator[Part]:
    skip = {id(p) for p in exclude if p is not None}
    for part_id, part in _leaves(msg, ""):
        if id(part) in skip:
            continue
        file_name = part.get_filename() or ""
        content_id = _header_str(part, "Content-ID").strip().strip("<>")
        disposition = part.get_content_disposition() or ""
        if not file_name and not content_id and disposition != "attachment":
            continue
        payload = part.get_payload(decode=True)
        yield Part(
            part_id=part_id,
            file_name=file_name,
            content_type=part.get_content_type(),
            content_id=content_id,
            disposition="attachment" if disposition == "attachment" else "inline",
            content=payload if isinstance(payload, bytes) else b"",
        )


def _leaves(part: Message, prefix: str) -> Iterator[tuple[str, Message]]:
    if not part.is_multipart():
        yield (prefix or "1", part)
        return
    children = part.get_payload()
    if not isinstance(children, list):
        return
    for index, child in enumerate(children, start=1):
        if isinstance(child, Message):
            yield from _leaves(child, f"{prefix}.{index}" if prefix else str(index))
