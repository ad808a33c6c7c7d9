"""Handling one record under a failure policy: attempts, retries, dead letters.

Kafka-free: the loop feeds it records from partitions, the retry worker rows from the retry
store. Database writes (a dead letter, a retry row) are retried until they succeed or the
partition is released, because the offset may only be committed after them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Protocol

import structlog
from agora_contract import Envelope
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agora_kit import tracing
from agora_kit.consumer import retry
from agora_kit.consumer.config import ConsumerConfig, FailurePolicy
from agora_kit.consumer.deadletter_table import ErrorKind
from agora_kit.consumer.deadletters import store_dead_letter
from agora_kit.consumer.handlers import (
    Decoded,
    Handler,
    HandlerContext,
    PermanentError,
    Poison,
    describe,
    parse,
    type_label,
)
from agora_kit.consumer.metrics import ConsumerMetrics
from agora_kit.consumer.retry import Record, RetryRow
from agora_kit.consumer.tables import ConsumerTables
from agora_kit.context import request_id_var

log = structlog.get_logger(__name__)


class Control(Protocol):
    """What the dispatcher needs from the partition it works for."""

    @property
    def stopping(self) -> asyncio.Event:
        """Set when the partition is revoked or the loop stops: abandon the record."""
        ...

    async def before_wait(self) -> None:
        """Commit what is done before a long wait (a retry in place)."""
        ...

    def heartbeat(self) -> None:
        """Record activity, so retrying is not taken for a stall."""
        ...


async def wait_or_stop(stopping: asyncio.Event, delay_s: float) -> bool:
    """Sleep ``delay_s`` unless ``stopping`` is set first; return whether it was."""
    if stopping.is_set():
        return True
    try:
        async with asyncio.timeout(delay_s):
            await stopping.wait()
    except TimeoutError:
        return False
    return True


class Dispatcher:
    """Decodes records, calls handlers and applies the failure policy."""

    def __init__(
        self,
        *,
        group: str,
        handlers: Mapping[str, Handler],
        policy: FailurePolicy,
        config: ConsumerConfig,
        session_factory: async_sessionmaker[AsyncSession],
        tables: ConsumerTables,
        metrics: ConsumerMetrics,
    ) -> None:
        self.group = group
        self.handlers = handlers
        self.policy = policy
        self.config = config
        self._session_factory = session_factory
        self.tables = tables
        self.metrics = metrics

    def _count(self, event_type: str | None, outcome: str) -> None:
        self.metrics.processed.labels(self.group, type_label(event_type), outcome).inc()

    async def _attempt(self, ctx: HandlerContext, decoded: Decoded) -> Exception | None:
        """Call the handler once, bounded; return its failure or None."""
        handler, event = decoded.handler, decoded.event
        assert handler is not None
        assert event is not None
        started = time.monotonic()
        # Events the handler emits (UnitOfWork.add_event) and its log lines carry the
        # correlation id of the event that caused them, as a request's do its X-Request-ID.
        correlation = request_id_var.set(decoded.envelope.correlationid)
        try:
            async with asyncio.timeout(self.config.handler_timeout_s):
                with tracing.consuming(ctx, decoded.envelope):
                    await handler(ctx, decoded.envelope, event)
        except TimeoutError:
            return TimeoutError(f"handler timed out after {self.config.handler_timeout_s:g} s")
        except Exception as exc:  # any handler failure is data for the policy, not a crash
            return exc
        finally:
            request_id_var.reset(correlation)
            self.metrics.handler_seconds.labels(
                self.group, type_label(decoded.envelope.type)
            ).observe(time.monotonic() - started)
        return None

    async def _durably(self, op: Callable[[AsyncSession], Awaitable[object]], ctl: Control) -> bool:
        """Run ``op`` in a transaction until it commits; False if the partition stops first."""
        failures = 0
        while True:
            try:
                async with self._session_factory.begin() as session:
                    await op(session)
                return True
            except Exception as exc:  # the database is away or slow: the offset must wait
                failures += 1
                delay = self.config.db_backoff.delay(failures)
                log.warning(
                    "consumer.store_failed", group=self.group, error=describe(exc), retry_in=delay
                )
                ctl.heartbeat()
                if await wait_or_stop(ctl.stopping, delay):
                    return False

    async def _dead_letter(
        self,
        session: AsyncSession,
        record: Record,
        *,
        kind: ErrorKind,
        error: str,
        attempts: int,
        envelope: Envelope | None = None,
        poison: Poison | None = None,
        first_failed_at: datetime | None = None,
    ) -> None:
        stored = await store_dead_letter(
            session,
            self.tables.dead_letter,
            outbox=self.tables.outbox,
            group=self.group,
            record=record,
            error=error,
            kind=kind,
            attempts=attempts,
            event_id=envelope.id if envelope else (poison.event_id if poison else None),
            event_type=envelope.type if envelope else (poison.event_type if poison else None),
            first_failed_at=first_failed_at,
        )
        if stored is not None:
            log.warning(
                "consumer.dead_lettered",
                group=self.group,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                kind=kind.value,
                error=error,
            )

    def _after_dead_letter(self, kind: ErrorKind, event_type: str | None) -> None:
        self.metrics.dead_letters.labels(self.group, kind.value).inc()
        self._count(event_type, "dead_lettered")

    async def _dead_letter_durably(
        self,
        record: Record,
        ctl: Control,
        *,
        kind: ErrorKind,
        error: str,
        attempts: int,
        envelope: Envelope | None = None,
        poison: Poison | None = None,
    ) -> bool:
        async def op(session: AsyncSession) -> None:
            await self._dead_letter(
                session,
                record,
                kind=kind,
                error=error,
                attempts=attempts,
                envelope=envelope,
                poison=poison,
            )

        if not await self._durably(op, ctl):
            return False
        if envelope is not None:
            self._after_dead_letter(kind, envelope.type)
        else:
            self._after_dead_letter(kind, poison.event_type if poison else None)
        return True

    # -- records from a partition -----------------------------------------------------------

    async def handle(self, record: Record, ctl: Control) -> bool:
        """Handle a live record; True once its offset may be committed."""
        parsed = parse(
            record, self.handlers, dead_letter_unhandled=self.config.dead_letter_unhandled
        )
        if isinstance(parsed, Poison):
            return await self._dead_letter_durably(
                record, ctl, kind=parsed.kind, error=parsed.error, attempts=0, poison=parsed
            )
        if parsed.handler is None:
            self._count(parsed.envelope.type, "skipped")
            return True
        if self.policy is FailurePolicy.IN_ORDER:
            return await self._in_order(record, parsed, ctl)
        return await self._independent(record, parsed, ctl)

    async def _independent(self, record: Record, decoded: Decoded, ctl: Control) -> bool:
        ctx = HandlerContext(group=self.group, record=record, attempt=1)
        failure = await self._attempt(ctx, decoded)
        ctl.heartbeat()
        envelope = decoded.envelope
        if failure is None:
            self._count(envelope.type, "ok")
            return True
        error = describe(failure)
        if isinstance(failure, PermanentError) or self.config.max_attempts <= 1:
            kind = (
                ErrorKind.PERMANENT if isinstance(failure, PermanentError) else ErrorKind.EXHAUSTED
            )
            return await self._dead_letter_durably(
                record, ctl, kind=kind, error=error, attempts=1, envelope=envelope
            )
        delay = self.config.backoff.delay(1)

        async def later(session: AsyncSession) -> None:
            await retry.schedule(
                session,
                self.tables.retry,
                group=self.group,
                record=record,
                attempts=1,
                delay_s=delay,
                error=error,
                event_id=envelope.id,
                event_type=envelope.type,
            )

        if not await self._durably(later, ctl):
            return False
        log.info(
            "consumer.retry_scheduled", group=self.group, event_id=str(envelope.id), error=error
        )
        self.metrics.retries.labels(self.group, "scheduled").inc()
        self._count(envelope.type, "retry_scheduled")
        return True

    async def _in_order(self, record: Record, decoded: Decoded, ctl: Control) -> bool:
        envelope = decoded.envelope
        attempt = 1
        while True:
            ctx = HandlerContext(group=self.group, record=record, attempt=attempt)
            failure = await self._attempt(ctx, decoded)
            ctl.heartbeat()
            if failure is None:
                self._count(envelope.type, "ok")
                return True
            error = describe(failure)
            permanent = isinstance(failure, PermanentError)
            limit = (
                self.config.permanent_attempts if permanent else self.config.max_transient_attempts
            )
            if limit is not None and attempt >= limit:
                return await self._dead_letter_durably(
                    record,
                    ctl,
                    kind=ErrorKind.PERMANENT if permanent else ErrorKind.EXHAUSTED,
                    error=error,
                    attempts=attempt,
                    envelope=envelope,
                )
            delay = self.config.backoff.delay(attempt)
            log.warning(
                "consumer.retry_in_place",
                group=self.group,
                event_id=str(envelope.id),
                attempt=attempt,
                error=error,
                retry_in=delay,
            )
            self.metrics.retries.labels(self.group, "in_place").inc()
            await ctl.before_wait()
            if await wait_or_stop(ctl.stopping, delay):
                return False
            attempt += 1

    # -- rows from the retry store ----------------------------------------------------------

    async def handle_retry(self, row: RetryRow) -> None:
        """Make the next attempt of a waiting row and record what came of it."""
        record, attempt, table = row.record, row.attempts + 1, self.tables.retry
        parsed = parse(
            record, self.handlers, dead_letter_unhandled=self.config.dead_letter_unhandled
        )
        if isinstance(parsed, Poison):
            async with self._session_factory.begin() as session:
                await self._dead_letter(
                    session,
                    record,
                    kind=parsed.kind,
                    error=parsed.error,
                    attempts=row.attempts,
                    poison=parsed,
                    first_failed_at=row.first_failed_at,
                )
                await retry.delete(session, table, row.id)
            self._after_dead_letter(parsed.kind, parsed.event_type)
            return
        envelope = parsed.envelope
        if parsed.handler is None:
            async with self._session_factory.begin() as session:
                await retry.delete(session, table, row.id)
            self._count(envelope.type, "skipped")
            return
        replayed = row.dead_letter_id is not None
        ctx = HandlerContext(group=self.group, record=record, attempt=attempt, replayed=replayed)
        failure = await self._attempt(ctx, parsed)
        if failure is None:
            async with self._session_factory.begin() as session:
                await retry.delete(session, table, row.id)
            self._count(envelope.type, "ok")
            return
        error = describe(failure)
        permanent = isinstance(failure, PermanentError)
        if not permanent and attempt < self.config.max_attempts:
            delay = self.config.backoff.delay(attempt)
            async with self._session_factory.begin() as session:
                await retry.reschedule(
                    session, table, row.id, attempts=attempt, delay_s=delay, error=error
                )
            self.metrics.retries.labels(self.group, "scheduled").inc()
            return
        kind = ErrorKind.PERMANENT if permanent else ErrorKind.EXHAUSTED
        async with self._session_factory.begin() as session:
            await self._dead_letter(
                session,
                record,
                kind=kind,
                error=error,
                attempts=attempt,
                envelope=envelope,
                first_failed_at=row.first_failed_at,
            )
            await retry.delete(session, table, row.id)
        self._after_dead_letter(kind, envelope.type)
