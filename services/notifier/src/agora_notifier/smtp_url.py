"""Parse the one ``SMTP_URL`` setting into host, port, TLS mode and credentials."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import unquote, urlsplit


class TlsMode(StrEnum):
    """How the connection is secured."""

    NONE = "none"  # smtp://: plain, never upgraded (a local sink or relay)
    STARTTLS = "starttls"  # smtp+starttls://: upgrade required, refuse if not offered
    TLS = "tls"  # smtps://: implicit TLS from the first byte


_SCHEMES = {
    "smtp": (TlsMode.NONE, 25),
    "smtp+starttls": (TlsMode.STARTTLS, 587),
    "smtps": (TlsMode.TLS, 465),
}


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    """Where and how to submit mail."""

    host: str
    port: int
    tls: TlsMode
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_smtp_url(url: str) -> SmtpTarget:
    """Parse ``smtp[s|+starttls]://[user:password@]host[:port]``; ValueError says what is wrong."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ValueError(
            f"SMTP_URL scheme must be one of {', '.join(sorted(_SCHEMES))}, not {scheme!r}"
        )
    mode, default_port = _SCHEMES[scheme]
    if not parts.hostname:
        raise ValueError("SMTP_URL needs a host, e.g. smtp://127.0.0.1:1025")
    try:
        port = parts.port or default_port
    except ValueError as exc:
        raise ValueError("SMTP_URL has an invalid port") from exc
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and username is None:
        raise ValueError("SMTP_URL has a password without a user name")
    return SmtpTarget(
        host=parts.hostname, port=port, tls=mode, username=username, password=password
    )
