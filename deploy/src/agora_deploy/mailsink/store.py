"""The mailbox: every received message, newest last, bounded in count, optionally on disk."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from agora_deploy.mailsink.disk import MailboxFile, Row
from agora_deploy.mailsink.headers import stamp_headers
from agora_deploy.mailsink.message import (
    StoredMessage,
    _parse_or_blank,
)
from agora_deploy.mailsink.mime import new_id

DEFAULT_MAX_MESSAGES = 50_000

log = logging.getLogger("agora_deploy.mailsink")


@dataclass(slots=True)
class Counters:
    """Runtime statistics in the shape of Mailpit's /api/v1/info RuntimeStats."""

    smtp_accepted: int = 0
    smtp_accepted_size: int = 0
    smtp_rejected: int = 0
    messages_deleted: int = 0
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class MailStore:
    """Messages kept in arrival order; the oldest are evicted (and counted) beyond max_messages.

    With ``data_dir`` every change is written to a SQLite file there before the call returns,
    and the messages of an earlier run are loaded back; without it the mailbox is memory only.
    """

    def __init__(
        self, *, max_messages: int = DEFAULT_MAX_MESSAGES, data_dir: Path | None = None
    ) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        self.max_messages = max_messages
        self.counters = Counters()
        self._messages: OrderedDict[str, StoredMessage] = OrderedDict()
        self._arrived = asyncio.Event()
        self._evicted = 0
        self._file: MailboxFile | None = None
        if data_dir is not None:
            self._file = MailboxFile(data_dir)
            try:
                self._load(self._file)
            except BaseException:
                self._file.close()
                raise

    @property
    def database(self) -> str:
        """Where the messages live: the SQLite file's path, or 'memory'."""
        return str(self._file.path) if self._file is not None else "memory"

    @property
    def evicted(self) -> int:
        """How many messages were dropped to stay within max_messages (over every run on disk)."""
        return self._evicted

    def close(self) -> None:
        """Close the file on disk, if any (idempotent)."""
        if self._file is not None:
            self._file.close()

    def _load(self, file: MailboxFile) -> None:
        for row in file.rows():
            self._messages[row.id] = StoredMessage(
                id=row.id,
                raw=row.raw,
                created_at=row.created_at,
                envelope_from=row.envelope_from,
                envelope_recipients=row.envelope_recipients,
                username=row.username,
                read=row.read,
                decoded=row.decoded,
            )
        self._evicted = file.evicted()
        # A bound lowered since the last run applies at once.
        excess = self._oldest(len(self._messages) - self.max_messages)
        if excess:
            file.evict(excess)
            self._drop(excess)
        log.info("loaded %d messages from %s", len(self._messages), file.path)

    def _oldest(self, count: int) -> list[str]:
        if count <= 0:
            return []
        ids = iter(self._messages)
        return [next(ids) for _ in range(min(count, len(self._messages)))]

    def _drop(self, ids: list[str]) -> None:
        for message_id in ids:
            del self._messages[message_id]
        self._evicted += len(ids)
        self.counters.messages_deleted += len(ids)

    def __len__(self) -> int:
        return len(self._messages)

    @property
    def unread(self) -> int:
        """Return how many messages nobody has opened through the API yet."""
        return sum(1 for m in self._messages.values() if not m.read)

    def add(
        self,
        raw: bytes,
        *,
        envelope_from: str,
        envelope_recipients: Iterable[str],
        username: str = "",
        received_at: datetime | None = None,
    ) -> StoredMessage:
        """Store one message as Mailpit would (with its added headers) and wake any waiters.

        With a data folder the message is on disk when this returns (SMTP answers 250 after).
        """
        recipients = tuple(envelope_recipients)
        try:
            stamped = stamp_headers(
                raw, envelope_from=envelope_from, envelope_recipients=recipients
            )
        except Exception:
            log.exception("could not add Mailpit's receipt headers; storing the message as sent")
            stamped = raw
        message = StoredMessage(
            id=new_id(),
            raw=stamped,
            created_at=received_at or datetime.now(UTC),
            envelope_from=envelope_from,
            envelope_recipients=recipients,
            username=username,
            decoded=_parse_or_blank(stamped),
        )
        evict = self._oldest(len(self._messages) + 1 - self.max_messages)
        if self._file is not None:
            self._file.add(
                Row(
                    id=message.id,
                    created_at=message.created_at,
                    envelope_from=message.envelope_from,
                    envelope_recipients=message.envelope_recipients,
                    username=message.username,
                    read=message.read,
                    raw=message.raw,
                    decoded=message.decoded,
                ),
                evict=evict,
            )
        self._drop(evict)
        self._messages[message.id] = message
        self.counters.smtp_accepted += 1
        self.counters.smtp_accepted_size += message.size
        arrived, self._arrived = self._arrived, asyncio.Event()
        arrived.set()
        return message

    def get(self, message_id: str) -> StoredMessage | None:
        """Return a message by its ID; 'latest' means the newest one, as in Mailpit."""
        if message_id == "latest":
            return self.latest()
        return self._messages.get(message_id)

    def latest(self) -> StoredMessage | None:
        """Return the newest message, if any."""
        if not self._messages:
            return None
        return self._messages[next(reversed(self._messages))]

    def newest_first(self) -> list[StoredMessage]:
        """Return every message, newest first."""
        return list(reversed(self._messages.values()))

    def delete(self, ids: Iterable[str]) -> int:
        """Delete the messages with these IDs; return how many existed."""
        existing = [i for i in dict.fromkeys(ids) if i in self._messages]
        if self._file is not None:
            self._file.delete(existing)
        for message_id in existing:
            del self._messages[message_id]
        self.counters.messages_deleted += len(existing)
        return len(existing)

    def clear(self) -> int:
        """Delete every message; return how many there were."""
        removed = len(self._messages)
        if self._file is not None:
            self._file.clear()
        self._messages.clear()
        self.counters.messages_deleted += removed
        return removed

    def mark_read(self, ids: Iterable[str] | None, *, read: bool) -> None:
        """Set the read flag of some messages, or of all when ids is None."""
        targets = (
            list(self._messages.values())
            if ids is None
            else [m for i in ids if (m := self._messages.get(i)) is not None]
        )
        if self._file is not None:
            self._file.mark_read(None if ids is None else [m.id for m in targets], read=read)
        for message in targets:
            message.read = read

    async def wait_for(self, predicate: Callable[[StoredMessage], bool]) -> StoredMessage:
        """Return the newest message matching predicate; bound the wait with asyncio.timeout."""
        while True:
            arrived = self._arrived
            for message in self.newest_first():
                if predicate(message):
                    return message
            await arrived.wait()
