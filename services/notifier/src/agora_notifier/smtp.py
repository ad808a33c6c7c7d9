"""Sending email: the ``EmailSender`` port and its aiosmtplib adapter with a connection pool."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from dataclasses import dataclass, field
from email import policy
from email.generator import BytesGenerator
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib
from aiosmtplib.errors import (
    SMTPAuthenticationError,
    SMTPException,
    SMTPRecipientsRefused,
    SMTPResponseException,
)

from agora_notifier.smtp_url import SmtpTarget, TlsMode

logger = logging.getLogger("agora.notifier.smtp")


class SendError(Exception):
    """An email was not accepted; ``permanent`` says whether retrying can help."""

    def __init__(self, message: str, *, permanent: bool, code: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.code = code


class EmailSender(Protocol):
    """Hands one message to a mail server; raises ``SendError`` when it is not accepted."""

    async def send(self, message: EmailMessage, *, sender: str, recipient: str) -> str:
        """Send ``message`` to ``recipient`` only; return the server's reply."""
        ...

    async def close(self) -> None:
        """Close every connection."""
        ...


def classify(exc: BaseException) -> SendError:
    """Map an SMTP or network failure to a ``SendError`` (5xx permanent, the rest transient)."""
    if isinstance(exc, SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        code = max(codes) if codes else None
        detail = "; ".join(f"{r.code} {r.message}" for r in exc.recipients) or str(exc)
        return SendError(f"recipient refused: {detail}", permanent=_is_5xx(code), code=code)
    if isinstance(exc, SMTPAuthenticationError):
        # A credentials problem hits every email alike: retry until an operator fixes it.
        return SendError(f"authentication failed: {exc.code} {exc.message}", permanent=False)
    if isinstance(exc, SMTPResponseException):
        return SendError(f"{exc.code} {exc.message}", permanent=_is_5xx(exc.code), code=exc.code)
    # Connection refused or dropped, timeouts, TLS trouble: all may heal.
    return SendError(f"{type(exc).__name__}: {exc}", permanent=False)


#: CPython's folder drops the quotes of a long display name when it wraps it at 78
#: characters ("Eve Bcc: x@evil.test" would then read as a group with that address), so
#: headers are never wrapped: our names and subjects are bounded far below 998.
_WIRE = policy.SMTP.clone(max_line_length=998)
_WIRE_UTF8 = policy.SMTPUTF8.clone(max_line_length=998)


def flatten(message: EmailMessage, *addresses: str) -> tuple[bytes, list[str]]:
    """Return the wire bytes of ``message`` and the MAIL options it needs (SMTPUTF8)."""
    utf8 = not all(a.isascii() for a in addresses)
    out = io.BytesIO()
    BytesGenerator(out, policy=_WIRE_UTF8 if utf8 else _WIRE).flatten(message)
    return out.getvalue(), (["SMTPUTF8"] if utf8 else [])


def _is_5xx(code: int | None) -> bool:
    return code is not None and 500 <= code <= 599


@dataclass
class _Connection:
    client: aiosmtplib.SMTP
    last_used: float = field(default_factory=time.monotonic)


class SmtpSender:
    """An ``EmailSender`` over a small pool of reused aiosmtplib connections."""

    def __init__(
        self,
        target: SmtpTarget,
        *,
        pool_size: int = 4,
        connect_timeout_s: float = 10.0,
        send_timeout_s: float = 20.0,
        idle_check_s: float = 10.0,
        validate_certs: bool = True,
    ) -> None:
        self._target = target
        self._connect_timeout_s = connect_timeout_s
        self._send_timeout_s = send_timeout_s
        self._idle_check_s = idle_check_s
        self._validate_certs = validate_certs
        self._slots = asyncio.Semaphore(pool_size)
        self._idle: list[_Connection] = []
        self._closed = False

    def _client(self) -> aiosmtplib.SMTP:
        target = self._target
        return aiosmtplib.SMTP(
            hostname=target.host,
            port=target.port,
            username=target.username,
            password=target.password,
            use_tls=target.tls is TlsMode.TLS,
            # True demands STARTTLS (fails if not offered); False never upgrades.
            start_tls=target.tls is TlsMode.STARTTLS,
            validate_certs=self._validate_certs,
            timeout=self._send_timeout_s,
        )

    async def _open(self) -> _Connection:
        client = self._client()
        # connect() also upgrades with STARTTLS and logs in, all within this bound.
        await asyncio.wait_for(
            client.connect(timeout=self._connect_timeout_s), self._connect_timeout_s * 2
        )
        return _Connection(client)

    async def _checkout(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.client.is_connected:
                continue
            if time.monotonic() - conn.last_used < self._idle_check_s:
                return conn
            try:
                # The server may have dropped an idle connection; find out before DATA.
                await asyncio.wait_for(conn.client.noop(), self._connect_timeout_s)
                return conn
            except (SMTPException, OSError, TimeoutError):
                await _discard(conn)
        return await self._open()

    async def send(self, message: EmailMessage, *, sender: str, recipient: str) -> str:
        """Send ``message`` to ``recipient`` on a pooled connection; raise ``SendError``."""
        if self._closed:
            raise SendError("the sender is closed", permanent=False)
        async with self._slots:
            conn: _Connection | None = None
            try:
                raw, options = flatten(message, sender, recipient)
                conn = await self._checkout()
                errors, reply = await asyncio.wait_for(
                    conn.client.sendmail(
                        sender,
                        [recipient],
                        raw,
                        mail_options=options,
                        timeout=self._send_timeout_s,
                    ),
                    self._send_timeout_s * 2,
                )
            except Exception as exc:
                if conn is not None:
                    # After a failure the session state is unknown: never reuse it.
                    await _discard(conn)
                raise classify(exc) from exc
            if errors:
                await _discard(conn)
                refused = "; ".join(f"{r}: {e.code} {e.message}" for r, e in errors.items())
                codes = [e.code for e in errors.values()]
                raise SendError(f"recipient refused: {refused}", permanent=_is_5xx(max(codes)))
            await self._release(conn)
            return reply

    async def _release(self, conn: _Connection) -> None:
        """Return a healthy connection to the pool (or close it when the pool closed)."""
        conn.last_used = time.monotonic()
        if self._closed:
            await _discard(conn)
        else:
            self._idle.append(conn)

    async def close(self) -> None:
        """Quit every idle connection (bounded) and refuse further sends."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(conn, self._connect_timeout_s) for conn in idle))


async def _quit(conn: _Connection, timeout_s: float) -> None:
    try:
        await asyncio.wait_for(conn.client.quit(), timeout_s)
    except Exception:  # a polite QUIT is best effort; close regardless
        conn.client.close()


async def _discard(conn: _Connection) -> None:
    with contextlib.suppress(Exception):
        conn.client.close()


class SenderComponent:
    """Closes the SMTP connection pool on shutdown (after the consumer stopped)."""

    def __init__(self, sender: EmailSender) -> None:
        self.name = "smtp"
        self._sender = sender

    async def start(self) -> None:
        """Nothing to start: connections open on the first email."""

    async def stop(self) -> None:
        """Quit the pooled connections."""
        await self._sender.close()

    def is_alive(self) -> bool:
        """The pool cannot wedge; a failing server shows as retries."""
        return True
