"""One assigned partition: its buffered records and the task that works through them in order.

Each partition has its own task, so a partition retrying in place holds up only itself. The
fetch loop never waits for handlers (it keeps polling, so the group never sees us as gone);
a partition whose buffer is full is paused until its task catches up.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError

from agora_kit.consumer.config import ConsumerConfig
from agora_kit.consumer.dispatch import Dispatcher
from agora_kit.consumer.retry import Record

log = logging.getLogger(__name__)

#: Commits offsets ``{tp: next offset}``; returns whether the broker took them.
Committer = Callable[[Mapping[TopicPartition, int]], Awaitable[bool]]


def to_record(message: Any) -> Record:
    """Turn an aiokafka ``ConsumerRecord`` into our ``Record``."""
    return Record(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        # Kafka allows null header values; we keep them as empty bytes.
        headers=tuple((str(k), bytes(v or b"")) for k, v in message.headers or ()),
    )


class PartitionWorker:
    """Processes one partition's records in offset order and commits after the effect."""

    def __init__(
        self,
        tp: TopicPartition,
        *,
        consumer: Any,
        dispatcher: Dispatcher,
        config: ConsumerConfig,
        commit: Committer,
    ) -> None:
        self.tp = tp
        self._consumer = consumer
        self._dispatcher = dispatcher
        self._config = config
        self._commit = commit
        self._records: collections.deque[Any] = collections.deque()
        self._ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self._paused = False
        #: The next offset to process: one past the last record whose effect is done.
        self.position: int | None = None
        self.committed: int | None = None
        self.progress_at = time.monotonic()
        self._since_commit = 0
        self._last_commit = time.monotonic()
        self.task: asyncio.Task[None] | None = None

    # -- the dispatcher's Control ------------------------------------------------------------

    @property
    def stopping(self) -> asyncio.Event:
        """Set when the partition is revoked or the loop stops."""
        return self._stopping

    def heartbeat(self) -> None:
        """Record an attempt: a partition retrying in place is busy, not stalled."""
        self.progress_at = time.monotonic()

    async def before_wait(self) -> None:
        """Commit the records done so far before a retry in place waits."""
        await self.commit()

    # -- driven by the session ----------------------------------------------------------------

    def start(self) -> None:
        """Spawn the partition's task."""
        self.task = asyncio.create_task(self._run(), name=f"consumer-partition:{self.tp}")

    def stop(self) -> None:
        """Ask the task to finish the record in hand and exit."""
        self._stopping.set()
        self._ready.set()

    @property
    def buffered(self) -> int:
        """Records fetched but not yet processed."""
        return len(self._records)

    def feed(self, messages: Iterable[Any]) -> None:
        """Queue fetched records; pause fetching when the buffer is full."""
        self._records.extend(messages)
        self._ready.set()
        if not self._paused and len(self._records) >= self._config.max_buffered:
            self._set_paused(True)

    def _set_paused(self, paused: bool) -> None:
        try:
            if paused:
                self._consumer.pause(self.tp)
            else:
                self._consumer.resume(self.tp)
            self._paused = paused
            log.debug(
                "consumer.paused" if paused else "consumer.resumed",
                extra={"partition": f"{self.tp.topic}[{self.tp.partition}]"},
            )
        except IllegalStateError:
            pass  # no longer assigned: the next owner starts unpaused anyway

    @property
    def uncommitted(self) -> int | None:
        """The position to commit, or None when the committed one is current."""
        if self.position is None or self.position == self.committed:
            return None
        return self.position

    async def commit(self) -> None:
        """Commit the position if it moved (failures are counted and redelivered later)."""
        target = self.uncommitted
        if target is not None and await self._commit({self.tp: target}):
            self.committed = target
        self._since_commit = 0
        self._last_commit = time.monotonic()

    async def _run(self) -> None:
        config = self._config
        while not self._stopping.is_set():
            if not self._records:
                await self.commit()  # idle: make the progress durable now
                self._ready.clear()
                if not self._records and not self._stopping.is_set():
                    await self._ready.wait()
                continue
            message = self._records.popleft()
            if self._paused and len(self._records) <= config.max_buffered // 2:
                self._set_paused(False)
            if self.position is not None and message.offset < self.position:
                continue  # fetched twice (a seek): already done
            if not await self._dispatcher.handle(to_record(message), self):
                return  # released mid-record: the next owner gets it from the committed offset
            self.position = message.offset + 1
            self.progress_at = time.monotonic()
            self._since_commit += 1
            if (
                self._since_commit >= config.commit_every
                or time.monotonic() - self._last_commit >= config.commit_interval_s
            ):
                await self.commit()
