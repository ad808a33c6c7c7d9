"""The mailbox on disk: one SQLite file in the sink's data folder, written before SMTP says 250."""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from agora_deploy.mailsink.mime import Address, Parsed, Part

log = logging.getLogger("agora_deploy.mailsink")

FILE_NAME = "mailbox.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    envelope_from TEXT NOT NULL,
    envelope_recipients TEXT NOT NULL,
    username TEXT NOT NULL,
    read INTEGER NOT NULL DEFAULT 0,
    raw BLOB NOT NULL,
    -- The decoded message as JSON: decoding with the email package costs milliseconds per
    -- message, far too long to redo for a whole mailbox at start.
    decoded TEXT
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


class MailboxLockedError(RuntimeError):
    """Another sink process already serves this data folder."""


@dataclass(frozen=True, slots=True)
class Row:
    """One stored message as read back from disk."""

    id: str
    created_at: datetime
    envelope_from: str
    envelope_recipients: tuple[str, ...]
    username: str
    read: bool
    raw: bytes
    #: None when it was not stored or cannot be read back: then it is decoded from ``raw``.
    decoded: Parsed | None = None


class MailboxFile:
    """SQLite storage for the mailbox; every change is committed before the method returns.

    WAL with ``synchronous=NORMAL``: a commit is in the operating system's hands when it
    returns, so killing the sink (even with SIGKILL) loses nothing it acknowledged; only a
    power cut can lose the last commits. The connection holds an exclusive lock, so a second
    sink cannot serve (and diverge from) the same folder.
    """

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / FILE_NAME
        self._db = sqlite3.connect(self.path, timeout=2.0)
        try:
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            with self._db:
                self._db.executescript(_SCHEMA)
                # A write now takes the exclusive lock for the life of the connection.
                self._db.execute(
                    "INSERT OR IGNORE INTO counters (name, value) VALUES ('evicted', 0)"
                )
        except sqlite3.OperationalError as exc:
            self._db.close()
            if "locked" in str(exc):
                raise MailboxLockedError(
                    f"{self.path} is in use by another mail sink process"
                ) from exc
            raise
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        """Close the file (idempotent)."""
        self._db.close()

    def rows(self) -> Iterator[Row]:
        """Every stored message, oldest first."""
        cursor = self._db.execute(
            "SELECT id, created_at, envelope_from, envelope_recipients, username, read, raw,"
            " decoded FROM messages ORDER BY seq"
        )
        for message_id, created, sender, recipients, username, read, raw, decoded in cursor:
            yield Row(
                id=message_id,
                created_at=datetime.fromisoformat(created),
                envelope_from=sender,
                envelope_recipients=tuple(json.loads(recipients)),
                username=username,
                read=bool(read),
                raw=bytes(raw),
                decoded=_decoded_or_none(decoded),
            )

    def evicted(self) -> int:
        """How many messages were ever dropped to keep within the bound."""
        row = self._db.execute("SELECT value FROM counters WHERE name = 'evicted'").fetchone()
        return int(row[0]) if row else 0

    def add(self, row: Row, *, evict: Sequence[str] = ()) -> None:
        """Store one message and drop the ``evict`` ones, counted, in one transaction."""
        with self._db:
            self._db.execute(
                "INSERT INTO messages (id, created_at, envelope_from, envelope_recipients,"
                " username, read, raw, decoded) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.id,
                    row.created_at.isoformat(),
                    row.envelope_from,
                    json.dumps(list(row.envelope_recipients)),
                    row.username,
                    int(row.read),
                    row.raw,
                    None if row.decoded is None else json.dumps(_parsed_json(row.decoded)),
                ),
            )
            self._evict(evict)

    def evict(self, ids: Sequence[str]) -> None:
        """Drop messages to keep within the bound (a lowered bound at start), counted."""
        with self._db:
            self._evict(ids)

    def delete(self, ids: Iterable[str]) -> None:
        """Delete messages on request (not counted as evicted)."""
        with self._db:
            self._db.executemany("DELETE FROM messages WHERE id = ?", ((i,) for i in ids))

    def clear(self) -> None:
        """Delete every message."""
        with self._db:
            self._db.execute("DELETE FROM messages")

    def mark_read(self, ids: Iterable[str] | None, *, read: bool) -> None:
        """Set the read flag of some messages, or of all when ids is None."""
        with self._db:
            if ids is None:
                self._db.execute("UPDATE messages SET read = ?", (int(read),))
            else:
                self._db.executemany(
                    "UPDATE messages SET read = ? WHERE id = ?", ((int(read), i) for i in ids)
                )

    def _evict(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        self._db.executemany("DELETE FROM messages WHERE id = ?", ((i,) for i in ids))
        self._db.execute(
            "UPDATE counters SET value = value + ? WHERE name = 'evicted'", (len(ids),)
        )


def _parsed_json(p: Parsed) -> dict[str, Any]:
    def addresses(items: Sequence[Address]) -> list[list[str]]:
        return [[a.name, a.address] for a in items]

    def parts(items: Sequence[Part]) -> list[list[str]]:
        return [
            [
                x.part_id,
                x.file_name,
                x.content_type,
                x.content_id,
                x.disposition,
                base64.b64encode(x.content).decode("ascii"),
            ]
            for x in items
        ]

    return {
        "message_id": p.message_id,
        "sender": None if p.sender is None else [p.sender.name, p.sender.address],
        "to": addresses(p.to),
        "cc": addresses(p.cc),
        "bcc": addresses(p.bcc),
        "reply_to": addresses(p.reply_to),
        "return_path": p.return_path,
        "subject": p.subject,
        "date": None if p.date is None else p.date.isoformat(),
        "text": p.text,
        "html": p.html,
        "inline": parts(p.inline),
        "attachments": parts(p.attachments),
    }


def _parsed_from_json(d: dict[str, Any]) -> Parsed:
    def addresses(items: list[list[str]]) -> tuple[Address, ...]:
        return tuple(Address(name=n, address=a) for n, a in items)

    def parts(items: list[list[str]]) -> tuple[Part, ...]:
        return tuple(
            Part(
                part_id=i,
                file_name=f,
                content_type=t,
                content_id=c,
                disposition=disp,
                content=base64.b64decode(data),
            )
            for i, f, t, c, disp, data in items
        )

    sender = d["sender"]
    return Parsed(
        message_id=d["message_id"],
        sender=None if sender is None else Address(name=sender[0], address=sender[1]),
        to=addresses(d["to"]),
        cc=addresses(d["cc"]),
        bcc=addresses(d["bcc"]),
        reply_to=addresses(d["reply_to"]),
        return_path=d["return_path"],
        subject=d["subject"],
        date=None if d["date"] is None else datetime.fromisoformat(d["date"]),
        text=d["text"],
        html=d["html"],
        inline=parts(d["inline"]),
        attachments=parts(d["attachments"]),
    )


def _decoded_or_none(text: str | None) -> Parsed | None:
    if text is None:
        return None
    try:
        return _parsed_from_json(json.loads(text))
    except (ValueError, KeyError, TypeError):
        log.warning("a stored message's decoded form is unreadable; decoding it again")
        return None
