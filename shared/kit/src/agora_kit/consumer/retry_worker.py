"""The retry worker: makes the next attempt of every due row in the retry store."""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agora_kit.consumer import retry
from agora_kit.consumer.dispatch import Dispatcher
from agora_kit.consumer.handlers import describe

log = logging.getLogger(__name__)


class RetryWorker:
    """Polls the retry store for one group; rows are leased, so processes share the work."""

    def __init__(
        self, dispatcher: Dispatcher, session_factory: async_sessionmaker[AsyncSession]
    ) -> None:
        self._dispatcher = dispatcher
        self._session_factory = session_factory
        self.heartbeat = time.monotonic()
        self._next_gauge = 0.0

    async def run(self) -> None:
        """Loop until cancelled; database errors back off (bounded) and retry."""
        config = self._dispatcher.config
        failures = 0
        while True:
            self.heartbeat = time.monotonic()
            try:
                handled = await self.run_once()
                await self._update_gauge()
                failures = 0
            except Exception as exc:  # the database is away: the rows keep, try again
                failures += 1
                delay = config.db_backoff.delay(failures)
                log.warning(
                    "consumer.retry_poll_failed",
                    extra={
                        "group": self._dispatcher.group,
                        "error": describe(exc),
                        "retry_in": delay,
                    },
                )
                await asyncio.sleep(delay)
                continue
            if handled < config.retry_batch_size:
                await asyncio.sleep(config.retry_poll_interval_s)

    async def run_once(self) -> int:
        """Claim and handle one batch of due rows; return how many were claimed."""
        dispatcher = self._dispatcher
        config = dispatcher.config
        async with self._session_factory.begin() as session:
            rows = await retry.claim_due(
                session,
                dispatcher.tables.retry,
                group=dispatcher.group,
                limit=config.retry_batch_size,
                lease_s=config.retry_lease_s,
            )
        for row in rows:
            try:
                await dispatcher.handle_retry(row)
            except Exception as exc:  # its lease runs out and it is tried again
                log.warning(
                    "consumer.retry_failed",
                    extra={"group": dispatcher.group, "row_id": row.id, "error": describe(exc)},
                )
            self.heartbeat = time.monotonic()
        return len(rows)

    async def _update_gauge(self) -> None:
        now = time.monotonic()
        if now < self._next_gauge:
            return
        dispatcher = self._dispatcher
        self._next_gauge = now + dispatcher.config.monitor_interval_s
        async with self._session_factory() as session:
            waiting = await retry.count_waiting(
                session, dispatcher.tables.retry, group=dispatcher.group
            )
        dispatcher.metrics.retry_waiting.labels(dispatcher.group).set(waiting)
