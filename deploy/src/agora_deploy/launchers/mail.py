"""The embedded mail sink (SMTP + Mailpit's HTTP API) as a child process."""

from __future__ import annotations

import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from agora_deploy.launchers.process import ManagedProcess, ensure_port_free

HOST = "127.0.0.1"


@dataclass
class MailSinkProcess:
    """A running mail sink."""

    process: ManagedProcess
    smtp_port: int
    http_port: int

    @property
    def api_url(self) -> str:
        """Base URL of the Mailpit-compatible API."""
        return f"http://{HOST}:{self.http_port}"

    @property
    def smtp_url(self) -> str:
        """SMTP URL for senders."""
        return f"smtp://{HOST}:{self.smtp_port}"

    def stop(self) -> None:
        """Stop the sink."""
        self.process.stop(timeout=5)


def _live(http_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{http_port}/livez", timeout=1) as resp:
            return int(resp.status) == 200
    except OSError:
        return False


def start_mail(
    log_path: Path,
    *,
    smtp_port: int,
    http_port: int,
    die_with_parent: bool = False,
    data_dir: Path | None = None,
) -> MailSinkProcess:
    """Start ``python -m agora_deploy.mailsink`` on the given ports.

    With ``data_dir`` the mailbox is kept there across restarts; None keeps it in memory.
    """
    ensure_port_free("mail (smtp)", HOST, smtp_port)
    ensure_port_free("mail (http)", HOST, http_port)
    argv = [
        sys.executable, "-m", "agora_deploy.mailsink",
        "--host", HOST, "--smtp-port", str(smtp_port), "--http-port", str(http_port),
    ]  # fmt: skip
    if data_dir is not None:
        argv += ["--data-dir", str(data_dir)]
    process = ManagedProcess("mail", argv, log_path, die_with_parent=die_with_parent)
    process.health = lambda: _live(http_port)
    process.ports = (smtp_port, http_port)
    process.start()
    process.wait_healthy(timeout=30)
    return MailSinkProcess(process, smtp_port, http_port)
