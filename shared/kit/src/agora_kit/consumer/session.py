"""One Kafka consumer's life: group membership, partition workers, fetch loop, lag monitor.

A session ends on a Kafka error; the loop then builds a new consumer (bounded backoff).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata

from agora_kit.consumer.config import ConsumerConfig
from agora_kit.consumer.dispatch import Dispatcher
from agora_kit.consumer.handlers import describe
from agora_kit.consumer.lag import PartitionLag, StallDetector
from agora_kit.consumer.metrics import ConsumerMetrics
from agora_kit.consumer.partition import PartitionWorker

log = logging.getLogger(__name__)

#: How long ``getmany`` waits when nothing is buffered (it returns at once when records are).
POLL_TIMEOUT_MS = 500


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, session: KafkaSession) -> None:
        self._session = session

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._session.release(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._session.assign(assigned)


class KafkaSession:
    """One Kafka consumer's life: membership, partition workers, fetch loop, lag monitor."""

    def __init__(
        self,
        consumer: Any,
        *,
        name: str,
        topics: Sequence[str],
        dispatcher: Dispatcher,
        on_task_done: Callable[[asyncio.Task[Any]], None],
    ) -> None:
        self.consumer = consumer
        self._name = name
        self._topics = list(topics)
        self._dispatcher = dispatcher
        self._on_task_done = on_task_done
        self._config: ConsumerConfig = dispatcher.config
        self._group = dispatcher.group
        self._metrics: ConsumerMetrics = dispatcher.metrics
        self.workers: dict[TopicPartition, PartitionWorker] = {}
        self.running = False
        self.fetch_heartbeat = time.monotonic()
        self.stalled: frozenset[TopicPartition] = frozenset()
        self.lags: dict[TopicPartition, PartitionLag] = {}
        self._detector = StallDetector(self._config.stall_timeout_s)
        self._monitor: asyncio.Task[None] | None = None

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> bool:
        """Commit ``{tp: next offset}``; False (logged, counted) when the broker refused."""
        if not offsets:
            return True
        payload = {tp: OffsetAndMetadata(offset, "") for tp, offset in offsets.items()}
        reason = "error"
        try:
            async with asyncio.timeout(self._config.request_timeout_ms / 1000):
                await self.consumer.commit(payload)
            return True
        except CommitFailedError as exc:
            reason, error = "rebalanced", describe(exc)
        except IllegalStateError as exc:
            reason, error = "unassigned", describe(exc)
        except (KafkaError, TimeoutError) as exc:
            error = describe(exc)
        self._metrics.commit_failures.labels(self._group, reason).inc()
        log.warning(
            "consumer.commit_failed", extra={"group": self._group, "reason": reason, "error": error}
        )
        return False

    def assign(self, assigned: set[TopicPartition]) -> None:
        """Start a worker for every newly assigned partition."""
        for tp in sorted(assigned):
            if tp in self.workers:
                continue
            worker = PartitionWorker(
                tp,
                consumer=self.consumer,
                dispatcher=self._dispatcher,
                config=self._config,
                commit=self.commit,
            )
            worker.start()
            assert worker.task is not None
            worker.task.add_done_callback(self._on_task_done)
            self.workers[tp] = worker
        log.info("consumer.assigned", extra={"group": self._group, "partitions": _names(assigned)})

    async def release(self, tps: set[TopicPartition], *, grace_s: float | None = None) -> None:
        """Let in-flight records finish (bounded), commit them, drop the buffered rest."""
        workers = [self.workers.pop(tp) for tp in sorted(tps) if tp in self.workers]
        for worker in workers:
            worker.stop()
        tasks = {w.task for w in workers if w.task is not None}
        grace = self._config.revoke_grace_s if grace_s is None else grace_s
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()  # a handler that overran the grace: its record is redelivered
            if pending:
                await asyncio.wait(pending, timeout=5.0)
        offsets = {w.tp: pos for w in workers if (pos := w.uncommitted) is not None}
        await self.commit(offsets)
        for worker in workers:
            self._forget_lag(worker.tp)
        if workers:
            log.info("consumer.released", extra={"group": self._group, "partitions": _names(tps)})

    def _forget_lag(self, tp: TopicPartition) -> None:
        self.lags.pop(tp, None)
        with contextlib.suppress(KeyError):  # never measured
            self._metrics.lag.remove(self._group, tp.topic, str(tp.partition))

    async def run(self) -> None:
        """Join the group and fetch until an error ends the session."""
        self.consumer.subscribe(self._topics, listener=_Listener(self))
        async with asyncio.timeout(self._config.start_timeout_s):
            await self.consumer.start()
        self.running = True
        self.fetch_heartbeat = time.monotonic()
        self._monitor = asyncio.create_task(self._monitor_loop(), name=f"{self._name}:lag")
        self._monitor.add_done_callback(self._on_task_done)
        while True:
            batches = await self.consumer.getmany(
                timeout_ms=POLL_TIMEOUT_MS, max_records=self._config.max_poll_records
            )
            self.fetch_heartbeat = time.monotonic()
            for tp, messages in batches.items():
                worker = self.workers.get(tp)
                if worker is not None:  # else revoked meanwhile: the next owner re-reads it
                    worker.feed(messages)

    async def close(self) -> None:
        """Drain the workers, commit, and leave the group (all bounded)."""
        self.running = False
        if self._monitor is not None:
            self._monitor.cancel()
            await asyncio.wait({self._monitor}, timeout=1.0)
        stop_s = self._config.stop_timeout_s
        await self.release(set(self.workers), grace_s=min(self._config.revoke_grace_s, stop_s / 2))
        try:
            async with asyncio.timeout(stop_s / 2):
                await self.consumer.stop()
        except Exception as exc:  # leaving is best effort: the session timeout covers it
            log.warning(
                "consumer.close_failed", extra={"group": self._group, "error": describe(exc)}
            )

    async def _monitor_loop(self) -> None:
        while True:
            await asyncio.sleep(self._config.monitor_interval_s)
            await self.measure()

    async def measure(self) -> None:
        """Measure lag on our partitions and run the stall detector."""
        workers = dict(self.workers)
        lags: dict[TopicPartition, int] = {}
        if workers:
            try:
                lags = await self._lags(workers)
            except (KafkaError, TimeoutError, IllegalStateError) as exc:
                # The broker is away or a rebalance is on: that is no stall.
                log.info(
                    "consumer.lag_unavailable", extra={"group": self._group, "error": describe(exc)}
                )
                self.stalled = frozenset()
                return
        progress = {tp: w.progress_at for tp, w in workers.items()}
        self.stalled = self._detector.check(lags, progress)
        self._metrics.stalled.labels(self._group).set(1 if self.stalled else 0)
        if self.stalled:
            log.error(
                "consumer.stalled", extra={"group": self._group, "partitions": _names(self.stalled)}
            )

    async def _lags(self, workers: Mapping[TopicPartition, PartitionWorker]) -> dict[Any, int]:
        tps = list(workers)
        async with asyncio.timeout(self._config.request_timeout_ms / 1000):
            ends = await self.consumer.end_offsets(tps)
            unknown = [tp for tp in tps if workers[tp].position is None]
            starts = await self.consumer.beginning_offsets(unknown) if unknown else {}
            lags: dict[Any, int] = {}
            for tp in tps:
                position = workers[tp].position
                if position is None:
                    position = await self.consumer.committed(tp)
                entry = PartitionLag(
                    topic=tp.topic,
                    partition=tp.partition,
                    end_offset=ends[tp],
                    position=position,
                    lag=max(0, ends[tp] - (position if position is not None else starts[tp])),
                )
                if tp in self.workers:
                    self.lags[tp] = entry
                    self._metrics.lag.labels(self._group, tp.topic, str(tp.partition)).set(
                        entry.lag
                    )
                lags[tp] = entry.lag
        return lags


def _names(tps: set[TopicPartition] | frozenset[TopicPartition]) -> list[str]:
    return [f"{tp.topic}[{tp.partition}]" for tp in sorted(tps)]
