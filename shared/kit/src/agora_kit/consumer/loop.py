"""The consumer loop: one group, a set of topics, per-partition workers, explicit commits.

aiokafka's known traps shape it: auto-commit off; offsets committed per partition as
``{tp: offset + 1}`` only after the effect; a rebalance listener that lets in-flight records
finish (bounded), commits them and drops the rest; ``CommitFailedError`` is logged and
counted, since redelivery plus deduplication repair it; our own stall detector, because a
stuck aiokafka consumer gives no public signal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from agora_contract.topics import dead_letter_topic
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agora_kit.consumer.config import ConsumerConfig, FailurePolicy
from agora_kit.consumer.dispatch import Dispatcher
from agora_kit.consumer.handlers import Handler, describe
from agora_kit.consumer.lag import PartitionLag, fetch_group_lag, group_lag
from agora_kit.consumer.metrics import ConsumerMetrics
from agora_kit.consumer.retry_worker import RetryWorker
from agora_kit.consumer.session import KafkaSession
from agora_kit.consumer.tables import ConsumerTables
from agora_kit.kafka import ensure_topics
from agora_kit.settings import ServiceSettings

log = logging.getLogger(__name__)


class ConsumerLoop:
    """Consumes ``topics`` as ``group`` and dispatches each event to its handler."""

    def __init__(
        self,
        *,
        settings: ServiceSettings,
        group: str,
        topics: Sequence[str],
        handlers: Mapping[str, Handler],
        policy: FailurePolicy,
        session_factory: async_sessionmaker[AsyncSession],
        tables: ConsumerTables,
        registry: CollectorRegistry,
        config: ConsumerConfig | None = None,
        client_id: str | None = None,
    ) -> None:
        if not topics:
            raise ValueError("a consumer loop needs at least one topic")
        self.name = f"consumer:{group}"
        self.group = group
        self.topics = tuple(topics)
        self.policy = policy
        self.settings = settings
        self.config = config or ConsumerConfig.from_settings(settings)
        self.metrics = ConsumerMetrics.for_registry(registry)
        self.dispatcher = Dispatcher(
            group=group,
            handlers=handlers,
            policy=policy,
            config=self.config,
            session_factory=session_factory,
            tables=tables,
            metrics=self.metrics,
        )
        self._client_id = client_id or f"{settings.service_name}-{group}"
        self._retry_worker = RetryWorker(self.dispatcher, session_factory)
        self._task: asyncio.Task[None] | None = None
        self._retry_task: asyncio.Task[None] | None = None
        self._session: KafkaSession | None = None
        self._stopping = False
        self._crash: BaseException | None = None
        self._topics_ready = False

    # -- Component -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Spawn the loop (it joins the group in the background) and the retry worker."""
        if self._task is not None:
            raise RuntimeError(f"{self.name} already started")
        self._stopping = False
        self._crash = None
        self._task = asyncio.create_task(self._supervise(), name=self.name)
        self._task.add_done_callback(self.watch_task)
        self._retry_task = asyncio.create_task(self._retry_worker.run(), name=f"{self.name}:retry")
        self._retry_task.add_done_callback(self.watch_task)

    async def stop(self) -> None:
        """Finish in-flight records (bounded), commit, leave the group; then cancel."""
        self._stopping = True
        tasks = {t for t in (self._task, self._retry_task) if t is not None and not t.done()}
        self._task = self._retry_task = None
        for task in tasks:
            task.cancel()
        if tasks:
            # asyncio.wait neither raises the tasks' CancelledError nor cancels them again.
            _, pending = await asyncio.wait(tasks, timeout=self.config.stop_timeout_s)
            if pending:
                log.error("consumer.stop_timeout", extra={"group": self.group})

    def is_alive(self) -> bool:
        """False when a task died, the fetch loop hangs, or a partition lags without progress."""
        if self._task is None or self._stopping:
            return True
        if self._crash is not None or self._task.done():
            return False
        if self._retry_task is None or self._retry_task.done():
            return False
        now = time.monotonic()
        # A claimed batch takes at most batch x handler timeout; longer means wedged.
        retry_bound = self.config.stall_timeout_s + self.config.handler_timeout_s * (
            self.config.retry_batch_size
        )
        if now - self._retry_worker.heartbeat > retry_bound:
            return False
        session = self._session
        if session is None or not session.running:
            return True  # connecting or backing off: the broker may be away, that is no stall
        if now - session.fetch_heartbeat > self.config.stall_timeout_s:
            return False
        return not session.stalled

    def watch_task(self, task: asyncio.Task[Any]) -> None:
        """Remember a background task that died of an error (``is_alive`` turns False)."""
        if task.cancelled() or self._stopping:
            return
        exc = task.exception()
        if exc is not None:
            self._crash = exc
            log.error(
                "consumer.task_crashed",
                extra={"group": self.group, "task": task.get_name(), "error": exc},
            )

    # -- observability ---------------------------------------------------------------------

    @property
    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this loop currently owns."""
        session = self._session
        return frozenset(session.workers) if session is not None else frozenset()

    def lag_snapshot(self) -> list[PartitionLag]:
        """The lag of our partitions as last measured (cheap; for metrics and health pages)."""
        session = self._session
        return sorted(session.lags.values(), key=_lag_key) if session is not None else []

    async def lag(self, *, timeout_s: float | None = None) -> list[PartitionLag]:
        """Measure the group's lag on every partition of its topics (for ``agora status``)."""
        timeout = timeout_s or self.config.request_timeout_ms / 1000
        session = self._session
        if session is None or not session.running:
            return await fetch_group_lag(
                self.settings.kafka_bootstrap_servers, self.group, self.topics, timeout_s=timeout
            )
        consumer = session.consumer
        tps = [
            TopicPartition(topic, p)
            for topic in self.topics
            for p in consumer.partitions_for_topic(topic) or ()
        ]
        return await group_lag(consumer, tps, timeout_s=timeout)

    async def measure(self) -> None:
        """Run one lag measurement and stall check now (tests, ``agora status``)."""
        if self._session is not None and self._session.running:
            await self._session.measure()

    # -- internals -------------------------------------------------------------------------

    def _new_consumer(self) -> AIOKafkaConsumer:
        config = self.config
        return AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            group_id=self.group,
            client_id=self._client_id,
            enable_auto_commit=False,
            auto_offset_reset=config.auto_offset_reset,
            session_timeout_ms=config.session_timeout_ms,
            heartbeat_interval_ms=config.heartbeat_interval_ms,
            max_poll_interval_ms=config.max_poll_interval_ms,
            rebalance_timeout_ms=config.rebalance_timeout_ms,
            fetch_max_wait_ms=config.fetch_max_wait_ms,
            request_timeout_ms=config.client_request_timeout_ms,
            max_poll_records=config.max_poll_records,
        )

    async def _ensure_topics(self) -> None:
        # The dead-letter feed's topic must exist before the relay publishes to it; the
        # broker never auto-creates topics. Best effort: the relay retries until it exists.
        if self._topics_ready:
            return
        try:
            await ensure_topics(self.settings, [dead_letter_topic(self.group)])
            self._topics_ready = True
        except (KafkaError, TimeoutError, OSError) as exc:
            log.warning(
                "consumer.ensure_topics_failed", extra={"group": self.group, "error": describe(exc)}
            )

    async def _supervise(self) -> None:
        failures = 0
        while not self._stopping:
            await self._ensure_topics()
            session = KafkaSession(
                self._new_consumer(),
                name=self.name,
                topics=self.topics,
                dispatcher=self.dispatcher,
                on_task_done=self.watch_task,
            )
            self._session = session
            try:
                await session.run()
            except (KafkaError, TimeoutError, OSError) as exc:
                # A session that got going resets the backoff; one that never did extends it.
                failures = 1 if session.running else failures + 1
                self.metrics.restarts.labels(self.group).inc()
                log.warning(
                    "consumer.session_failed", extra={"group": self.group, "error": describe(exc)}
                )
            finally:
                await session.close()
                self._session = None
            await asyncio.sleep(self.config.restart_backoff.delay(failures))


def _lag_key(entry: PartitionLag) -> tuple[str, int]:
    return entry.topic, entry.partition
