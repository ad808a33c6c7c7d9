"""The outbox relay: one active publisher per service, rows to Kafka in id order.

Exactly one relay is active per outbox table across workers and processes: the leader holds
a session-level ``pg_try_advisory_lock`` on a dedicated connection, and every query it runs
goes through that connection, so a relay whose session died can no longer mark rows (its
rows are re-sent by the next leader: at-least-once, never lost). When the leader's process
dies, Postgres ends its session and releases the lock, and a standby takes over.

The leader wakes on ``LISTEN`` (``enqueue`` notifies at commit) with a polling fallback,
sends a batch in id order, awaits every ack, and marks published only the acknowledged
prefix. On a failure it records the error on the first failed row, backs off (bounded,
exponential, jittered), and recreates its producer after a fatal error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agora_kit import outbox as ob
from agora_kit._aio import shielded
from agora_kit.outbox.publisher import (
    BatchPublisher,
    ProducerFactory,
    PublisherLimits,
    PublishFailedError,
)
from agora_kit.outbox.relay_config import (
    RelayConfig,
    RelayMetrics,
)

log = logging.getLogger(__name__)


class OutboxRelay:
    """Publishes one outbox table's rows to Kafka while holding the table's advisory lock."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        outbox: sa.Table,
        producer_factory: ProducerFactory,
        registry: CollectorRegistry,
        config: RelayConfig | None = None,
        name: str | None = None,
    ) -> None:
        self.name = name or f"outbox-relay:{outbox.name}"
        self._engine = engine
        self._table = outbox
        self._config = cfg = config or RelayConfig()
        self._metrics = RelayMetrics(registry)
        self._publisher = BatchPublisher(
            outbox,
            producer_factory,
            limits=PublisherLimits(
                batch_size=cfg.batch_size,
                send_timeout_s=cfg.send_timeout_s,
                ack_timeout_s=cfg.ack_timeout_s,
                producer_timeout_s=cfg.producer_start_timeout_s,
            ),
            published=self._metrics.published,
            errors=self._metrics.errors,
            name=self.name,
        )
        self._lock_key = ob.advisory_lock_key(outbox)
        self._channel = ob.notify_channel(outbox)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._conn: AsyncConnection | None = None
        self._backend_pid: int | None = None
        self._wake = asyncio.Event()
        self._heartbeat = time.monotonic()
        self._failures = 0
        self._next_retention = 0.0
        self._next_metrics = 0.0

    # -- Component -------------------------------------------------------------------------

    async def start(self) -> None:
        """Spawn the relay task (it waits for the lock, then publishes)."""
        if self._task is not None:
            raise RuntimeError(f"{self.name} already started")
        self._stopping = False
        self._heartbeat = time.monotonic()
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Cancel the task, then close the producer and the lock connection (bounded)."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            # asyncio.wait, not wait_for: it neither raises the task's CancelledError nor
            # cancels the task further, and our own cancellation still propagates.
            await asyncio.wait({task}, timeout=self._config.stop_timeout_s)
            if not task.done():
                log.error("relay.stop_timeout", extra={"relay": self.name})
        if task is not None and task.done() and not task.cancelled() and task.exception():
            log.error("relay.crashed", extra={"relay": self.name, "error": repr(task.exception())})
        # The task's own cleanup normally did this; a wedged task leaves it to us.
        await self._publisher.close()
        await self._release()

    def is_alive(self) -> bool:
        """Return False when the relay task died unexpectedly or stopped making progress."""
        task = self._task
        if task is None or self._stopping:
            return True
        if task.done():
            return False
        return time.monotonic() - self._heartbeat < self._config.stall_limit_s()

    # -- observability ---------------------------------------------------------------------

    @property
    def is_active(self) -> bool:
        """Whether this relay currently holds the lock and publishes."""
        return self._conn is not None

    @property
    def lock_backend_pid(self) -> int | None:
        """The Postgres backend pid of the lock connection while active (for ops and tests)."""
        return self._backend_pid

    async def backlog(self) -> tuple[int, float | None]:
        """Return (unpublished rows, age in seconds of the oldest one or None)."""
        async with self._engine.connect() as conn:
            return await ob.pending_stats(conn, self._table)

    async def _update_metrics(self, conn: AsyncConnection) -> None:
        now = time.monotonic()
        if now < self._next_metrics:
            return
        self._next_metrics = now + self._config.metrics_interval_s
        count, age = await ob.pending_stats(conn, self._table)
        self._metrics.backlog.set(count)
        self._metrics.oldest_age.set(age or 0.0)

    # -- the loop --------------------------------------------------------------------------

    def _beat(self) -> None:
        self._heartbeat = time.monotonic()

    def _backoff(self) -> float:
        self._failures += 1
        cfg = self._config
        ceiling = min(cfg.backoff_max_s, cfg.backoff_initial_s * 2.0 ** min(self._failures, 30))
        return ceiling * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret

    async def _run(self) -> None:
        while True:
            self._beat()
            try:
                acquired = await self._try_acquire()
            except Exception as exc:
                delay = self._backoff()
                log.warning(
                    "relay.lock_error",
                    extra={"relay": self.name, "error": repr(exc), "retry_in": delay},
                )
                await asyncio.sleep(delay)
                continue
            self._failures = 0
            if not acquired:
                interval = self._config.standby_interval_s
                await asyncio.sleep(interval * random.uniform(0.8, 1.2))  # noqa: S311
                continue
            try:
                await self._lead()
            except Exception as exc:
                log.warning("relay.lost_lead", extra={"relay": self.name, "error": repr(exc)})
            finally:
                await self._release()
                await self._publisher.close()
            await asyncio.sleep(self._backoff())

    async def _try_acquire(self) -> bool:
        conn = await self._engine.connect()
        try:
            # Autocommit: the lock is session-level, and NOTIFY only reaches a session that is
            # outside a transaction.
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            got = (
                await conn.execute(sa.select(sa.func.pg_try_advisory_lock(self._lock_key)))
            ).scalar_one()
            if not got:
                with contextlib.suppress(Exception):
                    await self._update_metrics(conn)  # standbys report the backlog too
                await conn.close()
                return False
            self._backend_pid = (
                await conn.execute(sa.select(sa.func.pg_backend_pid()))
            ).scalar_one()
        except BaseException:
            await shielded(conn.invalidate())
            raise
        self._conn = conn
        return True

    async def _release(self) -> None:
        conn, self._conn = self._conn, None
        self._backend_pid = None
        self._metrics.active.set(0)
        if conn is not None:
            # Never returned to the pool: closing the session is what releases the lock.
            with contextlib.suppress(Exception):
                await shielded(conn.invalidate())

    async def _lead(self) -> None:
        conn = self._conn
        assert conn is not None
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        self._wake.clear()
        await driver.add_listener(self._channel, self._on_notify)
        driver.add_termination_listener(self._on_terminated)
        self._metrics.active.set(1)
        self._failures = 0
        log.info("relay.active", extra={"relay": self.name, "backend_pid": self._backend_pid})
        while True:
            self._beat()
            # Cleared before reading: a commit landing during this pass wakes the next one.
            self._wake.clear()
            try:
                full = await self._publisher.publish(conn)
            except PublishFailedError:
                await self._update_metrics(conn)
                await asyncio.sleep(self._backoff())
                continue
            self._failures = 0
            await self._maybe_retention(conn)
            await self._update_metrics(conn)
            if full:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._config.poll_interval_s)

    def _on_notify(self, *_args: object) -> None:
        self._wake.set()

    def _on_terminated(self, *_args: object) -> None:
        # The next query fails fast and the relay returns to standby.
        self._wake.set()

    async def _maybe_retention(self, conn: AsyncConnection) -> None:
        now = time.monotonic()
        if now < self._next_retention:
            return
        self._next_retention = now + self._config.retention_interval_s
        await ob.run_retention(
            conn,
            self._table,
            retention=self._config.retention,
            delete_after=self._config.delete_after,
            max_batches=self._config.retention_max_batches,
        )
