"""Consumer lag from ``end_offsets`` and committed offsets, and the stall detector.

The admin client's ``list_consumer_group_offsets`` breaks the embedded broker's connection
(seen on Tansu), so lag comes from a consumer's own ``committed()`` and ``end_offsets()``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """How far one partition's group position is behind its end."""

    topic: str
    partition: int
    end_offset: int
    #: The next offset the group will process (None: nothing committed yet).
    position: int | None
    lag: int

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (``agora status --json``)."""
        return {
            "topic": self.topic,
            "partition": self.partition,
            "end_offset": self.end_offset,
            "position": self.position,
            "lag": self.lag,
        }


def partition_lag(
    tp: TopicPartition, end_offset: int, position: int | None, beginning: int = 0
) -> PartitionLag:
    """Combine an end offset and a position (None: from ``beginning``) into a lag."""
    start = position if position is not None else beginning
    return PartitionLag(
        topic=tp.topic,
        partition=tp.partition,
        end_offset=end_offset,
        position=position,
        lag=max(0, end_offset - start),
    )


async def group_lag(
    consumer: AIOKafkaConsumer, tps: Iterable[TopicPartition], *, timeout_s: float
) -> list[PartitionLag]:
    """Return the lag of ``consumer``'s group on ``tps`` (committed vs end offsets)."""
    parts = sorted(set(tps))
    if not parts:
        return []
    async with asyncio.timeout(timeout_s):
        ends = await consumer.end_offsets(parts)
        beginnings = await consumer.beginning_offsets(parts)
        result = []
        for tp in parts:
            committed = await consumer.committed(tp)
            result.append(partition_lag(tp, ends[tp], committed, beginnings.get(tp, 0)))
    return result


async def fetch_group_lag(
    bootstrap_servers: str, group: str, topics: Iterable[str], *, timeout_s: float = 10.0
) -> list[PartitionLag]:
    """Return a group's lag on every partition of ``topics`` without joining the group."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=group,
        client_id=f"agora-lag-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        request_timeout_ms=int(timeout_s * 1000),
    )
    try:
        async with asyncio.timeout(timeout_s):
            await consumer.start()
            # A consumer that subscribes to nothing tracks no topic metadata, and the public
            # API has no partition listing; the client's full metadata fetch has it.
            cluster = await consumer._client.fetch_all_metadata()
            tps = [
                TopicPartition(topic, p)
                for topic in topics
                for p in cluster.partitions_for_topic(topic) or ()
            ]
        return await group_lag(consumer, tps, timeout_s=timeout_s)
    finally:
        # Never joined: stopping only closes connections; bounded anyway.
        await asyncio.wait_for(consumer.stop(), timeout_s)


class StallDetector:
    """Flags partitions that are behind and have made no progress for ``timeout_s``.

    The clock starts at the later of the partition's last progress and the moment it was
    first seen behind, so a long idle stretch followed by a new message is not a stall.
    """

    def __init__(self, timeout_s: float, *, clock: Clock = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self._clock = clock
        self._behind_since: dict[TopicPartition, float] = {}

    def check(
        self, lags: Mapping[TopicPartition, int], progress_at: Mapping[TopicPartition, float]
    ) -> frozenset[TopicPartition]:
        """Return the stalled partitions among ``lags`` (forgets partitions not listed)."""
        now = self._clock()
        stalled: set[TopicPartition] = set()
        for tp in list(self._behind_since):
            if lags.get(tp, 0) <= 0:
                del self._behind_since[tp]
        for tp, lag in lags.items():
            if lag <= 0:
                continue
            since = self._behind_since.setdefault(tp, now)
            last = max(since, progress_at.get(tp, since))
            if now - last >= self.timeout_s:
                stalled.add(tp)
        return frozenset(stalled)
