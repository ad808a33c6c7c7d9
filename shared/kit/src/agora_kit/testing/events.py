"""Watch topics from their current end and keep every envelope published there (tests only).

No group join: the tap assigns every partition of its topics, so it starts collecting at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Self

from agora_contract import Envelope
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from agora_kit.testing.poll import DEFAULT_TIMEOUT_S, eventually

logger = logging.getLogger("agora.testing.events")

#: Bound on stopping the tap's consumer: above its request timeout, since ``stop()`` waits for
#: a fetch in flight (a slow broker at the end of a session answers one only at that timeout).
STOP_TIMEOUT_S = 20.0


@dataclass(frozen=True, slots=True)
class Tapped:
    """One record the tap read: where, its key and headers, and its envelope."""

    topic: str
    key: bytes | None
    envelope: Envelope
    headers: tuple[tuple[str, bytes], ...]


class EventTap:
    """Collects every envelope of some topics from where they ended when the tap started."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer
        #: Every record read, in arrival order (undecodable ones are skipped).
        self.records: list[Tapped] = []
        self._positions: dict[TopicPartition, int] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self, topics: Sequence[str], *, timeout_s: float = 30.0) -> None:
        """Assign every partition of ``topics``, seek to their ends, then collect."""
        async with asyncio.timeout(timeout_s):
            await self.consumer.start()
            await self.consumer.topics()  # loads the cluster metadata
            partitions: list[TopicPartition] = []
            for topic in topics:
                ids = self.consumer.partitions_for_topic(topic) or set()
                partitions += [TopicPartition(topic, p) for p in sorted(ids)]
            if not partitions:
                raise AssertionError(f"no partitions for {list(topics)}")
            self.consumer.assign(partitions)
            await self.consumer.seek_to_end(*partitions)
            for tp in partitions:  # resolved now, before any test writes
                self._positions[tp] = await self.consumer.position(tp)
        self._task = asyncio.create_task(self._run(), name="event-tap")

    @contextlib.asynccontextmanager
    async def running(self, topics: Sequence[str]) -> AsyncIterator[Self]:
        """Start collecting ``topics`` (as ``start``), yield the tap, then stop it."""
        await self.start(topics)
        try:
            yield self
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Stop collecting and close the consumer."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=5)
        try:
            await asyncio.wait_for(self.consumer.stop(), STOP_TIMEOUT_S)
        except (asyncio.CancelledError, KafkaError, TimeoutError) as exc:
            current = asyncio.current_task()
            if isinstance(exc, asyncio.CancelledError) and current and current.cancelling():
                raise  # we are being cancelled: not ours to swallow
            # aiokafka re-raises a fetch that timed out while it closes (a loaded broker);
            # its connections are closed either way, and a tap is no test's subject.
            logger.warning("event tap: the consumer stopped with %s", type(exc).__name__)

    async def _run(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=100)
            for tp, messages in batches.items():
                for message in messages:
                    self._positions[tp] = message.offset + 1
                    # Another suite's junk on a shared topic is not ours to judge.
                    with contextlib.suppress(Exception):
                        envelope = Envelope.from_bytes(message.value)
                        self.records.append(
                            Tapped(message.topic, message.key, envelope, tuple(message.headers))
                        )

    def where(self, predicate: Callable[[Tapped], bool]) -> list[Tapped]:
        """The records that satisfy ``predicate``, in arrival order."""
        return [r for r in self.records if predicate(r)]

    async def wait(
        self,
        predicate: Callable[[Tapped], bool],
        count: int = 1,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        what: str = "tapped records",
    ) -> list[Tapped]:
        """Wait until at least ``count`` records satisfy ``predicate``; return them all."""
        await eventually(
            lambda: len(self.where(predicate)) >= count,
            timeout_s=timeout_s,
            what=f"{count} {what}",
        )
        return self.where(predicate)

    async def read_to_end(self, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        """Wait until the tap has read every partition up to its end offset of now."""
        ends = await self.consumer.end_offsets(list(self._positions))
        await eventually(
            lambda: all(self._positions[tp] >= end for tp, end in ends.items()),
            timeout_s=timeout_s,
            what="topics read to their end",
        )
