"""The relay's steps: send batches of outbox rows in id order, mark each acked prefix.

Rows are marked published only after the broker acknowledged them, and only the
acknowledged prefix of what is in flight: a later row that went out after a failed one is
re-sent after it next time, so each key's last deliveries are in order (at-least-once;
consumers deduplicate on the envelope id and skip older ``aggregateversion``s).

Up to two batches are in flight (:mod:`.flight`): the next batch is handed to the producer
while the broker still writes the one before, so a row committed meanwhile waits for one
broker write, not for that write plus the relay's mark and select round trips.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError
from prometheus_client import Counter
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from agora_kit.outbox import redact_secrets
from agora_kit.outbox.flight import AckTimeoutError, Flight, send_all

log = logging.getLogger(__name__)

ProducerFactory = Callable[[], AIOKafkaProducer]

#: Batches sent and not yet marked, at most: one the broker writes, one waiting behind it.
MAX_FLIGHTS = 2

__all__ = ["AckTimeoutError", "BatchPublisher", "PublishFailedError", "PublisherLimits"]


class PublishFailedError(Exception):
    """A batch stopped at a failed row; ``fatal`` means the producer must be replaced."""

    def __init__(self, cause: BaseException, *, fatal: bool) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause
        self.fatal = fatal


def is_fatal(exc: BaseException) -> bool:
    """Whether ``exc`` may have left the producer unusable (so it is recreated)."""
    # Timeouts and retriable errors (a broker away or slow, a leader move) heal in the same
    # producer, which works again as soon as the broker answers. Anything else
    # (OutOfOrderSequenceNumber, ProducerClosed, ProducerFenced, a wedged ack, a bug) may
    # have left it unusable.
    if isinstance(exc, AckTimeoutError):
        return True
    if isinstance(exc, TimeoutError | KafkaTimeoutError):
        return False
    return not (isinstance(exc, KafkaError) and exc.retriable)


@dataclass(frozen=True, slots=True)
class PublisherLimits:
    """Batch size and the bounds on every producer call."""

    batch_size: int = 1000
    send_timeout_s: float = 10.0
    ack_timeout_s: float = 25.0
    producer_timeout_s: float = 10.0


class BatchPublisher:
    """Owns the producer and publishes one batch at a time over a given connection."""

    def __init__(
        self,
        table: sa.Table,
        producer_factory: ProducerFactory,
        *,
        limits: PublisherLimits,
        published: Counter,
        errors: Counter,
        name: str,
    ) -> None:
        self._table = table
        self._factory = producer_factory
        self._limits = limits
        self._published = published
        self._errors = errors
        self._name = name
        self._producer: AIOKafkaProducer | None = None
        self._broken = False
        self._flights: collections.deque[Flight] = collections.deque()
        t = table
        # Built once: the next unpublished rows in id order, past those already in flight.
        self._next = (
            sa.select(t.c.id, t.c.topic, t.c.key, t.c.value, t.c.headers)
            .where(t.c.published_at.is_(None))
            .order_by(t.c.id)
            .limit(sa.bindparam("limit"))
        )
        busy = sa.bindparam("busy", type_=ARRAY(sa.BigInteger))
        self._next_busy = self._next.where(t.c.id != sa.all_(busy))

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is not None and not self._broken:
            return self._producer
        if self._producer is not None:
            log.warning("relay.producer_recreate", extra={"relay": self._name})
            await self.close()
        producer = self._factory()
        try:
            await asyncio.wait_for(producer.start(), self._limits.producer_timeout_s)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), self._limits.producer_timeout_s)
            raise
        self._producer, self._broken = producer, False
        return producer

    async def close(self) -> None:
        """Stop the producer (bounded); the next batch builds a new one.

        Batches in flight are forgotten unmarked: their rows go out again (at-least-once).
        """
        producer, self._producer = self._producer, None
        self._broken = False
        self._flights.clear()
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), self._limits.producer_timeout_s)
            except Exception as exc:
                log.warning(
                    "relay.producer_stop_failed", extra={"relay": self._name, "error": repr(exc)}
                )

    @property
    def in_flight(self) -> bool:
        """Whether a batch sent is not marked yet."""
        return bool(self._flights)

    async def publish(self, conn: AsyncConnection) -> bool:
        """Mark the batches whose acks are in; then send the next batch if there is room.

        Return True when the batch sent was full (more rows may wait). Raises
        ``PublishFailedError`` after recording the error on the first failed row.
        """
        await self._land_ready(conn)
        if len(self._flights) >= MAX_FLIGHTS:
            return False
        busy = [row_id for flight in self._flights for row_id in flight.ids]
        limit = self._limits.batch_size
        if busy:
            result = await conn.execute(self._next_busy, {"busy": busy, "limit": limit})
        else:
            result = await conn.execute(self._next, {"limit": limit})
        rows = result.all()
        if busy:
            # Stop at the first row of a key still in flight: were that batch to fail, this
            # row must not reach the topic before the one it follows is sent again.
            keys = {key for flight in self._flights for key in flight.keys}
            held = next((i for i, row in enumerate(rows) if row.key in keys), len(rows))
            rows = rows[:held]
        if not rows:
            return False
        try:
            producer = await self._ensure_producer()
        except Exception as exc:
            await self._record_failure(conn, rows[0].id, exc)
            self._broken = True
            await self._drop_flights()
            raise PublishFailedError(exc, fatal=True) from exc
        flight = await send_all(producer, rows, timeout_s=self._limits.send_timeout_s)
        self._flights.append(flight)
        if flight.failure is not None:
            while self._flights:  # mark what went out before it, in order; then raise
                await self._land(conn, self._flights[0], block=True)
        return len(rows) == self._limits.batch_size

    async def wait(self, wake: asyncio.Event, timeout_s: float) -> None:
        """Until the oldest batch in flight is answered, or a wake while another fits."""
        oldest = self._flights[0]
        left = self._limits.ack_timeout_s - (time.monotonic() - oldest.sent_at)
        waiters: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(oldest.wait(min(timeout_s, left)))
        ]
        if len(self._flights) < MAX_FLIGHTS:
            waiters.append(asyncio.ensure_future(wake.wait()))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _land_ready(self, conn: AsyncConnection) -> None:
        while self._flights and await self._land(conn, self._flights[0], block=False):
            pass

    async def _land(self, conn: AsyncConnection, flight: Flight, *, block: bool) -> bool:
        """Mark ``flight``'s acked prefix once it is answered (or overdue); False if not yet.

        Raises ``PublishFailedError`` when it stopped at a failed row: the batches behind it
        are dropped unmarked, to be sent again after it.
        """
        limit = self._limits.ack_timeout_s
        if block:
            await flight.wait(limit - (time.monotonic() - flight.sent_at))
        elif not flight.done() and time.monotonic() - flight.sent_at < limit:
            return False
        self._flights.popleft()
        acked, failure = flight.outcome(limit)
        if acked:
            await self._mark(conn, flight, acked)
        if failure is None:
            return True
        await self._drop_flights()
        await self._record_failure(conn, flight.rows[len(acked)].id, failure)
        fatal = is_fatal(failure)
        self._broken = self._broken or fatal
        raise PublishFailedError(failure, fatal=fatal) from failure

    async def _mark(self, conn: AsyncConnection, flight: Flight, acked: list[int]) -> None:
        t = self._table
        # One-time tokens must not wait for retention in clear: once the broker holds a
        # message, its row keeps everything but the secret fields of ``data``, set in the
        # very statement that marks it published (the connection autocommits).
        scrubbed = {
            row.id: clean
            for row in flight.rows[: len(acked)]
            if (clean := redact_secrets(row.value)) is not row.value
        }
        values: dict[str, Any] = {
            "published_at": sa.func.now(),
            "attempts": t.c.attempts + 1,
            "last_error": None,
        }
        if scrubbed:
            values["value"] = sa.case(scrubbed, value=t.c.id, else_=t.c.value)
        await conn.execute(sa.update(t).where(t.c.id.in_(acked)).values(**values))
        self._published.inc(len(acked))

    async def _drop_flights(self) -> None:
        """Forget the batches in flight, unmarked (bounded wait: no send left unanswered)."""
        flights, self._flights = list(self._flights), collections.deque()
        for flight in flights:
            await flight.wait(self._limits.producer_timeout_s)

    async def _record_failure(self, conn: AsyncConnection, row_id: int, exc: BaseException) -> None:
        self._errors.inc()
        error = f"{type(exc).__name__}: {exc}"[:1000]
        log.warning(
            "relay.publish_failed", extra={"relay": self._name, "row_id": row_id, "error": error}
        )
        t = self._table
        await conn.execute(
            sa.update(t).where(t.c.id == row_id).values(attempts=t.c.attempts + 1, last_error=error)
        )
