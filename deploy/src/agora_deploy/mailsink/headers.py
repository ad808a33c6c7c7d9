"""Raw message headers: read as Mailpit shows them, and the sink's own stamped on."""

from __future__ import annotations

import email
import re
from collections.abc import Iterable
from email import policy
from email.message import EmailMessage
from email.utils import formataddr

from agora_deploy.mailsink.mime import (
    _addresses,
    _header_str,
    new_id,
)

_HEADER_SPLIT = re.compile(rb"\r?\n\r?\n")


_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def header_map(raw: bytes) -> dict[str, list[str]]:
    """Return the headers as Go's net/mail reads them: canonical keys, unfolded raw values."""
    block = _HEADER_SPLIT.split(raw, maxsplit=1)[0].decode("utf-8", errors="replace")
    headers: dict[str, list[str]] = {}
    name: str | None = None
    for line in block.splitlines():
        if line[:1] in (" ", "\t") and name is not None:
            values = headers[name]
            values[-1] = f"{values[-1]} {line.strip()}".strip()
            continue
        key, sep, value = line.partition(":")
        if not sep:
            name = None
            continue
        name = canonical_header_key(key.strip())
        headers.setdefault(name, []).append(value.strip())
    return dict(sorted(headers.items()))


def canonical_header_key(key: str) -> str:
    """Return Go's CanonicalMIMEHeaderKey: 'message-id' becomes 'Message-Id'."""
    if not _TOKEN.match(key):
        return key
    return "-".join(word[:1].upper() + word[1:].lower() for word in key.split("-"))


def stamp_headers(raw: bytes, *, envelope_from: str, envelope_recipients: Iterable[str]) -> bytes:
    """Add what Mailpit adds on receipt: Return-Path, a missing Message-ID, envelope-only Bcc."""
    msg = email.message_from_bytes(raw, _class=EmailMessage, policy=policy.default)
    seen = {a.address.lower() for field in ("To", "Cc", "Bcc") for a in _addresses(msg, field)}
    missing: list[str] = []
    for rcpt in envelope_recipients:
        if rcpt.lower() not in seen:
            seen.add(rcpt.lower())
            missing.append(rcpt)
    if missing:
        # Rebuild Bcc from what parsed: an unparsable original (say "(") joined with the
        # envelope recipients would hide them from every later reader.
        kept = [
            formataddr((a.name, a.address))
            for a in _addresses(msg, "Bcc")
            if "@" in a.address and a.address.isascii() and a.address.isprintable()
        ]
        raw = _set_header(raw, "Bcc", ", ".join([*kept, *missing]))
    if not _header_str(msg, "Message-ID").strip("<> "):
        raw = _set_header(raw, "Message-ID", f"<{new_id()}@mailpit>")
    if _header_str(msg, "Return-Path").strip("<> ") != envelope_from:
        raw = _set_header(raw, "Return-Path", f"<{envelope_from}>")
    return raw


def _raw_headers(raw: bytes) -> list[tuple[str, str]]:
    return [(key.lower(), value) for key, values in header_map(raw).items() for value in values]


def _set_header(raw: bytes, name: str, value: str) -> bytes:
    """Replace every occurrence of a header (with its folded lines) by one at the top."""
    newline = b"\r\n" if b"\r\n" in raw[:2048] or not raw else b"\n"
    match = _HEADER_SPLIT.search(raw)
    head, rest = (raw[: match.start()], raw[match.start() :]) if match else (raw, b"")
    kept: list[bytes] = []
    dropping = False
    target = name.lower().encode()
    for line in head.splitlines():
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        dropping = line.split(b":", 1)[0].strip().lower() == target
        if not dropping:
            kept.append(line)
    first = f"{name}: {value}".encode()
    return newline.join([first, *kept]) + rest
