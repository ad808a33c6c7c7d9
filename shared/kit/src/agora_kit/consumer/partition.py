"""One assigned partition: its buffered records and the tasks that work through them.

Each partition has its own task, so a partition retrying in place holds up only itself. The
fetch loop never waits for handlers (it keeps polling, so the group never sees us as gone);
a partition whose buffer is full is paused until its task catches up.

Within a partition, records of different keys may be handled at once (``max_in_flight``
lanes, one per key): a key's records keep their offset order, and the committed offset is
the lowest one not yet done, so a crash redelivers only what was unfinished (and what ran
ahead of it, which the handlers' inbox deduplicates). With ``max_in_flight=1`` the
partition is handled strictly in offset order.
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

#: The lane of records without a key (they keep their order among themselves).
_NO_KEY = object()


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


class _Offsets:
    """Which dispatched offsets are done, and so which offset is safe to commit."""

    def __init__(self) -> None:
        self._dispatched: collections.deque[int] = collections.deque()
        self._done: set[int] = set()
        #: One past the highest offset dispatched (None before the first).
        self.next: int | None = None

    def dispatch(self, offset: int) -> None:
        self._dispatched.append(offset)
        self.next = offset + 1

    def finish(self, offset: int) -> int:
        """Mark ``offset`` done; return the lowest offset not done (the commit position)."""
        self._done.add(offset)
        while self._dispatched and self._dispatched[0] in self._done:
            self._done.discard(self._dispatched.popleft())
        if self._dispatched:
            return self._dispatched[0]
        assert self.next is not None
        return self.next


class PartitionWorker:
    """Processes one partition's records (in order per key) and commits after the effect."""

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
        #: Key -> the records of that key waiting for (or in) its running lane.
        self._lanes: dict[object, collections.deque[Any]] = {}
        self._lane_tasks: set[asyncio.Task[None]] = set()
        self._lane_error: BaseException | None = None
        self._offsets = _Offsets()
        self._commit_lock = asyncio.Lock()
        #: The next offset to process: the lowest one whose effect is not done yet.
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
        """Ask the task to finish the records in hand and exit."""
        self._stopping.set()
        self._ready.set()

    @property
    def buffered(self) -> int:
        """Records fetched but not yet processed."""
        return len(self._records) + sum(len(lane) for lane in self._lanes.values())

    def feed(self, messages: Iterable[Any]) -> None:
        """Queue fetched records; pause fetching when the buffer is full."""
        self._records.extend(messages)
        self._ready.set()
        if not self._paused and self.buffered >= self._config.max_buffered:
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
        async with self._commit_lock:  # lanes commit too: one commit at a time, in order
            target = self.uncommitted
            if target is not None and await self._commit({self.tp: target}):
                self.committed = target
            self._since_commit = 0
            self._last_commit = time.monotonic()

    async def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                self._raise_lane_error()
                if not self._records:
                    if not self._lanes:
                        await self.commit()  # idle: make the progress durable now
                    self._ready.clear()
                    if not self._records and not self._stopping.is_set():
                        await self._ready.wait()
                    continue
                message = self._records[0]
                key = _NO_KEY if message.key is None else message.key
                lane = self._lanes.get(key)
                if lane is None and len(self._lanes) >= self._config.max_in_flight:
                    self._ready.clear()
                    await self._ready.wait()  # a lane ending (or a stop) sets it
                    continue
                self._records.popleft()
                if self._paused and self.buffered <= self._config.max_buffered // 2:
                    self._set_paused(False)
                if self._offsets.next is not None and message.offset < self._offsets.next:
                    continue  # fetched twice (a seek): already dispatched
                self._offsets.dispatch(message.offset)
                if lane is not None:
                    lane.append(message)
                else:
                    self._start_lane(key, message)
            if self._lane_tasks:  # stopping: let the records in hand finish
                await asyncio.wait(set(self._lane_tasks))
            self._raise_lane_error()
        finally:
            for task in self._lane_tasks:
                task.cancel()

    def _raise_lane_error(self) -> None:
        if self._lane_error is not None:
            raise self._lane_error

    def _start_lane(self, key: object, message: Any) -> None:
        lane = self._lanes[key] = collections.deque([message])
        task = asyncio.create_task(self._work(key, lane), name=f"consumer-lane:{self.tp}")
        self._lane_tasks.add(task)
        task.add_done_callback(self._lane_done)

    def _lane_done(self, task: asyncio.Task[None]) -> None:
        self._lane_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self._lane_error is None:
            self._lane_error = task.exception()
        self._ready.set()

    async def _work(self, key: object, lane: collections.deque[Any]) -> None:
        """Handle one key's records in order; leave the lane when none is left."""
        config = self._config
        try:
            while lane and not self._stopping.is_set():
                message = lane[0]
                if not await self._dispatcher.handle(to_record(message), self):
                    return  # released mid-record: the next owner gets it from the committed offset
                lane.popleft()
                self.position = self._offsets.finish(message.offset)
                self.progress_at = time.monotonic()
                self._since_commit += 1
                if (
                    self._since_commit >= config.commit_every
                    or time.monotonic() - self._last_commit >= config.commit_interval_s
                ):
                    await self.commit()
        finally:
            del self._lanes[key]
