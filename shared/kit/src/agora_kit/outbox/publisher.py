"""One relay step: send a batch of outbox rows in id order, await the acks, mark the prefix.

Rows are marked published only after the broker acknowledged them, and only the
acknowledged prefix of a batch: a later row that went out after a failed one is re-sent
after it next time, so each key's last deliveries are in order (at-least-once; consumers
deduplicate on the envelope id and skip older ``aggregateversion``s).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncConnection

from agora_kit import tracing
from agora_kit.outbox import decode_headers, redact_secrets

log = logging.getLogger(__name__)

ProducerFactory = Callable[[], AIOKafkaProducer]


def _end_publish(span: Any, future: asyncio.Future[Any]) -> None:
    # Ends when the broker acknowledged (or the send failed); never-answered sends stay open
    # and are dropped with the producer.
    error = None if future.cancelled() else future.exception()
    tracing.end_publish(span, KafkaError("send cancelled") if future.cancelled() else error)


class AckTimeoutError(TimeoutError):
    """The producer did not resolve a send within our own bound: it is wedged."""


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
        """Stop the producer (bounded); the next batch builds a new one."""
        producer, self._producer = self._producer, None
        self._broken = False
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), self._limits.producer_timeout_s)
            except Exception as exc:
                log.warning(
                    "relay.producer_stop_failed", extra={"relay": self._name, "error": repr(exc)}
                )

    async def publish(self, conn: AsyncConnection) -> bool:
        """Publish the next batch; return True when it was full (more rows may wait).

        Raises ``PublishFailedError`` after recording the error on the first failed row.
        """
        t = self._table
        query = (
            sa.select(t.c.id, t.c.topic, t.c.key, t.c.value, t.c.headers)
            .where(t.c.published_at.is_(None))
            .order_by(t.c.id)
            .limit(self._limits.batch_size)
        )
        rows = (await conn.execute(query)).all()
        if not rows:
            return False
        try:
            producer = await self._ensure_producer()
        except Exception as exc:
            await self._record_failure(conn, rows[0].id, exc)
            self._broken = True
            raise PublishFailedError(exc, fatal=True) from exc
        futures, failure = await self._send_all(producer, rows)
        acked, failure = await self._await_acks(rows, futures, failure)
        if acked:
            # One-time tokens must not wait for retention in clear: once the broker holds a
            # message, its row keeps everything but the secret fields of ``data``, set in the
            # very statement that marks it published (the connection autocommits).
            scrubbed = {
                row.id: clean
                for row in rows[: len(acked)]
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
        if failure is None:
            return len(rows) == self._limits.batch_size
        await self._record_failure(conn, rows[len(acked)].id, failure)
        fatal = is_fatal(failure)
        self._broken = self._broken or fatal
        raise PublishFailedError(failure, fatal=fatal) from failure

    async def _send_all(
        self, producer: AIOKafkaProducer, rows: Sequence[Any]
    ) -> tuple[list[asyncio.Future[Any]], BaseException | None]:
        futures: list[asyncio.Future[Any]] = []
        failed = asyncio.Event()

        def on_done(future: asyncio.Future[Any]) -> None:
            # Also consumes the exception, so an abandoned future is never "unretrieved".
            if future.cancelled() or future.exception() is not None:
                failed.set()

        for row in rows:
            if failed.is_set():
                break  # a row already failed: sending more only adds re-sends out of order
            headers = decode_headers(row.headers)
            # A `relay publish` span per row, under the row's own stored traceparent.
            span = tracing.start_publish(row.topic, headers) if tracing.ENABLED else None
            try:
                async with asyncio.timeout(self._limits.send_timeout_s):
                    with tracing.activate(span):
                        future = await producer.send(
                            row.topic, value=row.value, key=row.key, headers=headers
                        )
            except Exception as exc:
                if span is not None:
                    tracing.end_publish(span, exc)
                return futures, exc
            if span is not None:
                future.add_done_callback(functools.partial(_end_publish, span))
            futures.append(future)
            if future.done():
                on_done(future)  # a callback on a done future would only run after the loop
            else:
                future.add_done_callback(on_done)
        return futures, None

    async def _await_acks(
        self,
        rows: Sequence[Any],
        futures: list[asyncio.Future[Any]],
        failure: BaseException | None,
    ) -> tuple[list[int], BaseException | None]:
        if futures:
            await asyncio.wait(futures, timeout=self._limits.ack_timeout_s)
        acked: list[int] = []
        for row, future in zip(rows, futures, strict=False):
            if not future.done():
                return acked, AckTimeoutError(f"no ack within {self._limits.ack_timeout_s}s")
            if future.cancelled():
                return acked, KafkaError("send cancelled")
            if (error := future.exception()) is not None:
                return acked, error
            acked.append(row.id)
        # Sending stops early only after a future failed, and that one is found above.
        return acked, failure

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
