"""The SMTP side: an aiosmtpd server on the running loop that stores mail and obeys chaos."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

from agora_deploy.mailsink.chaos import Chaos
from agora_deploy.mailsink.store import MailStore

log = logging.getLogger("agora_deploy.mailsink")

SHUTDOWN_REPLY = b"421 4.3.2 Mail sink shutting down\r\n"


class _DropLoginDataNotice(logging.Filter):
    """aiosmtpd warns about its own deprecated attribute after every successful AUTH."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


_LOGIN_DATA_FILTER = _DropLoginDataNotice()


class SinkHandler:
    """aiosmtpd hooks: chaos on MAIL, RCPT and AUTH; every accepted message goes to the store."""

    def __init__(self, *, store: MailStore, chaos: Chaos) -> None:
        self.store = store
        self.chaos = chaos

    async def handle_MAIL(  # noqa: N802 - aiosmtpd finds hooks by this name
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        """Refuse the sender when the Sender trigger fires for it, else accept it."""
        code = self.chaos.fire("Sender", address)
        if code is not None:
            self.store.counters.smtp_rejected += 1
            return f"{code} Chaos sender error"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(  # noqa: N802 - aiosmtpd finds hooks by this name
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        """Refuse the recipient when the Recipient trigger fires for it, else accept it."""
        code = self.chaos.fire("Recipient", address)
        if code is not None:
            self.store.counters.smtp_rejected += 1
            return f"{code} Chaos recipient error"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_AUTH(  # noqa: N802 - aiosmtpd finds hooks by this name
        self, server: SMTP, session: Session, envelope: Envelope, args: list[str]
    ) -> Any:
        """Refuse authentication when the Authentication trigger fires, else go on."""
        code = self.chaos.fire("Authentication")
        if code is not None:
            return f"{code} Chaos authentication error"
        return MISSING

    async def handle_DATA(  # noqa: N802 - aiosmtpd finds hooks by this name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        """Store the message and log one line about it."""
        raw = envelope.original_content or b""
        auth = session.auth_data
        username = (
            auth.login.decode("utf-8", errors="replace") if isinstance(auth, LoginPassword) else ""
        )
        try:
            message = self.store.add(
                raw,
                envelope_from=envelope.mail_from or "",
                envelope_recipients=envelope.rcpt_tos,
                username=username,
            )
        except Exception:
            # Never 250 for a message that is not stored: a transient error makes senders retry.
            log.exception("could not store a received message")
            return "451 4.3.0 Could not store the message; try again later"
        log.info(
            "received %s from=<%s> to=%s size=%d subject=%r",
            message.id,
            message.envelope_from,
            ",".join(f"<{r}>" for r in message.envelope_recipients),
            message.size,
            message.subject,
        )
        return f"250 2.0.0 Ok: queued as {message.id}"


def accept_any(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: object
) -> AuthResult:
    """Accept every PLAIN or LOGIN credential, like Mailpit's --smtp-auth-accept-any."""
    return AuthResult(success=True, auth_data=auth_data)


class _TrackedSMTP(SMTP):
    """aiosmtpd's protocol, remembering its live connections so stop() can close them."""

    def __init__(self, handler: SinkHandler, *, live: set[_TrackedSMTP], **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._live = live

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._live.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self._live.discard(self)
        super().connection_lost(error)

    def close_for_shutdown(self) -> asyncio.Task[None] | None:
        """Tell the client we are going away, drop the connection, return its handler task."""
        transport = self.transport
        if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
            transport.write(SHUTDOWN_REPLY)
        if transport is not None:
            transport.close()
        task: asyncio.Task[None] | None = self._handler_coroutine
        return task


class SmtpServer:
    """A listening aiosmtpd server bound to an already-open socket."""

    def __init__(
        self,
        *,
        handler: SinkHandler,
        sock: socket.socket,
        hostname: str,
        max_message_bytes: int,
        idle_timeout: float = 300.0,
    ) -> None:
        self._handler = handler
        self._sock = sock
        self._hostname = hostname
        self._max_message_bytes = max_message_bytes
        self._idle_timeout = idle_timeout
        self._live: set[_TrackedSMTP] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Start accepting SMTP connections on the running loop."""
        loop = asyncio.get_running_loop()
        aiosmtpd_log = logging.getLogger("mail.log")
        if _LOGIN_DATA_FILTER not in aiosmtpd_log.filters:
            aiosmtpd_log.addFilter(_LOGIN_DATA_FILTER)

        def factory() -> _TrackedSMTP:
            return _TrackedSMTP(
                self._handler,
                live=self._live,
                hostname=self._hostname,
                ident="Agora mail sink (Mailpit API)",
                data_size_limit=self._max_message_bytes,
                enable_SMTPUTF8=True,
                auth_require_tls=False,
                authenticator=accept_any,
                timeout=self._idle_timeout,
                loop=loop,
            )

        self._server = await loop.create_server(factory, sock=self._sock)

    async def stop(self, *, grace: float = 5.0) -> None:
        """Stop listening, close every open session and wait for their tasks."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = [t for c in list(self._live) if (t := c.close_for_shutdown()) is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        await asyncio.wait_for(server.wait_closed(), timeout=grace)
