"""MailSink: the SMTP server and the HTTP API together on the running event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import uvicorn

from agora_deploy.mailsink.api import create_app
from agora_deploy.mailsink.chaos import Chaos
from agora_deploy.mailsink.smtp import SinkHandler, SmtpServer
from agora_deploy.mailsink.store import DEFAULT_MAX_MESSAGES, MailStore

log = logging.getLogger("agora_deploy.mailsink")

DEFAULT_MAX_MESSAGE_BYTES = 32 * 1024 * 1024
_STARTUP_TIMEOUT = 10.0
_SHUTDOWN_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class MailSinkConfig:
    """Where the sink listens and how much it keeps; port 0 picks a free port.

    ``data_dir`` keeps the mailbox on disk across restarts; None keeps it in memory only.
    """

    host: str = "127.0.0.1"
    smtp_port: int = 0
    http_port: int = 0
    max_messages: int = DEFAULT_MAX_MESSAGES
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    smtp_hostname: str | None = None
    data_dir: Path | None = None


class _EmbeddedUvicorn(uvicorn.Server):
    """A uvicorn server that leaves signal handling to whoever owns the process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install no signal handlers: the embedding program decides when to stop."""
        yield


class MailSink:
    """A Mailpit stand-in: an SMTP sink with Mailpit's HTTP API, in memory or on disk."""

    def __init__(self, config: MailSinkConfig | None = None) -> None:
        self.config = config or MailSinkConfig()
        self.store = MailStore(max_messages=self.config.max_messages, data_dir=self.config.data_dir)
        self.chaos = Chaos()
        self._smtp: SmtpServer | None = None
        self._http: _EmbeddedUvicorn | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._smtp_port: int | None = None
        self._http_port: int | None = None

    @property
    def host(self) -> str:
        """Return the address both servers listen on."""
        return self.config.host

    @property
    def smtp_port(self) -> int:
        """Return the SMTP port (the one picked when the config said 0)."""
        if self._smtp_port is None:
            raise RuntimeError("the mail sink is not running")
        return self._smtp_port

    @property
    def http_port(self) -> int:
        """Return the HTTP API port (the one picked when the config said 0)."""
        if self._http_port is None:
            raise RuntimeError("the mail sink is not running")
        return self._http_port

    @property
    def api_url(self) -> str:
        """Return the base URL of the HTTP API, e.g. http://127.0.0.1:8025."""
        return f"http://{_url_host(self.host)}:{self.http_port}"

    @property
    def smtp_url(self) -> str:
        """Return an SMTP_URL pointing at this sink, e.g. smtp://127.0.0.1:1025."""
        return f"smtp://{_url_host(self.host)}:{self.smtp_port}"

    async def start(self) -> None:
        """Bind both ports, then serve SMTP and HTTP on the running loop."""
        if self._smtp is not None:
            raise RuntimeError("the mail sink is already running")
        smtp_sock = _listen(self.config.host, self.config.smtp_port)
        try:
            http_sock = _listen(self.config.host, self.config.http_port)
        except BaseException:
            smtp_sock.close()
            raise
        self._smtp_port = smtp_sock.getsockname()[1]
        self._http_port = http_sock.getsockname()[1]
        handler = SinkHandler(store=self.store, chaos=self.chaos)
        self._smtp = SmtpServer(
            handler=handler,
            sock=smtp_sock,
            hostname=self.config.smtp_hostname or socket.gethostname(),
            max_message_bytes=self.config.max_message_bytes,
        )
        try:
            await self._smtp.start()
            await self._start_http(http_sock)
        except BaseException:
            http_sock.close()
            await self.stop()
            raise
        log.info(
            "mail sink listening smtp=%s:%d http=%s:%d",
            self.host,
            self.smtp_port,
            self.host,
            self.http_port,
        )

    async def stop(self) -> None:
        """Stop the HTTP API and the SMTP server, then close the mailbox; safe to call twice."""
        http, task = self._http, self._http_task
        self._http, self._http_task = None, None
        if http is not None and task is not None:
            http.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=_SHUTDOWN_TIMEOUT)
            except TimeoutError:
                http.force_exit = True
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            except Exception:
                log.exception("the mail sink's HTTP server failed")
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            await smtp.stop(grace=_SHUTDOWN_TIMEOUT)
        self._smtp_port = self._http_port = None
        self.store.close()

    async def __aenter__(self) -> MailSink:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _start_http(self, sock: socket.socket) -> None:
        config = uvicorn.Config(
            create_app(store=self.store, chaos=self.chaos),
            lifespan="off",
            log_config=None,
            access_log=False,
            ws="none",
            timeout_graceful_shutdown=int(_SHUTDOWN_TIMEOUT),
        )
        server = _EmbeddedUvicorn(config)
        task = asyncio.create_task(server.serve(sockets=[sock]), name="mailsink-http")
        self._http, self._http_task = server, task
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _STARTUP_TIMEOUT
        while not server.started:
            if task.done():
                raise RuntimeError("the mail sink's HTTP server did not start") from (
                    task.exception() if not task.cancelled() else None
                )
            if loop.time() > deadline:
                raise TimeoutError("the mail sink's HTTP server did not start in time")
            await asyncio.sleep(0.01)


def _listen(host: str, port: int) -> socket.socket:
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.create_server(address[:2], family=family, backlog=128)
    sock.setblocking(False)
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
