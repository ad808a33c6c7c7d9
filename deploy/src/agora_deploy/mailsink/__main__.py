"""Run the mail sink: python -m agora_deploy.mailsink --host H --smtp-port P --http-port Q.

With ``--data-dir DIR`` the mailbox lives in DIR/mailbox.sqlite3 and survives restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

from agora_deploy.mailsink.disk import MailboxLockedError
from agora_deploy.mailsink.server import DEFAULT_MAX_MESSAGE_BYTES, MailSink, MailSinkConfig
from agora_deploy.mailsink.store import DEFAULT_MAX_MESSAGES

log = logging.getLogger("agora_deploy.mailsink")


def parse_args(argv: Sequence[str] | None = None) -> MailSinkConfig:
    """Read the command line into a MailSinkConfig."""
    parser = argparse.ArgumentParser(
        prog="python -m agora_deploy.mailsink",
        description="SMTP sink serving Mailpit's HTTP API (in memory, or on disk with --data-dir).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address for both servers")
    parser.add_argument("--smtp-port", type=int, default=1025, help="SMTP port (0: pick one)")
    parser.add_argument("--http-port", type=int, default=8025, help="HTTP port (0: pick one)")
    parser.add_argument(
        "--max-messages",
        type=int,
        default=DEFAULT_MAX_MESSAGES,
        help="messages kept; the oldest are evicted (and counted) beyond this",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep the mailbox in this folder across restarts (default: memory only)",
    )
    parser.add_argument(
        "--max-message-bytes",
        type=int,
        default=DEFAULT_MAX_MESSAGE_BYTES,
        help="largest message accepted (SMTP SIZE)",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    args = parser.parse_args(argv)
    if args.max_messages < 1:
        parser.error("--max-messages must be at least 1")
    for name in ("smtp_port", "http_port"):
        if not 0 <= getattr(args, name) <= 65535:
            parser.error(f"--{name.replace('_', '-')} must be between 0 and 65535")
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # One line per message is ours to write; the libraries' per-command chatter is not.
    for noisy in ("mail.log", "uvicorn", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, log.getEffectiveLevel()))
    return MailSinkConfig(
        host=args.host,
        smtp_port=args.smtp_port,
        http_port=args.http_port,
        max_messages=args.max_messages,
        max_message_bytes=args.max_message_bytes,
        data_dir=args.data_dir,
    )


async def serve(config: MailSinkConfig) -> None:
    """Run the sink until SIGTERM or SIGINT, then stop it cleanly."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    sink = MailSink(config)
    try:
        await sink.start()
        await stop.wait()
        log.info("mail sink stopping")
    finally:
        await sink.stop()
        for sig in signals:
            loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    config = parse_args(argv)
    try:
        asyncio.run(serve(config))
    except (OSError, MailboxLockedError, sqlite3.DatabaseError) as exc:
        log.error("mail sink could not start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
