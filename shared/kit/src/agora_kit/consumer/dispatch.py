"""Handling one record under a failure policy: attempts, retries, dead letters.

Kafka-free: the loop feeds it records from partitions, the retry worker rows from the retry
store. Database writes (a dead letter, a retry row) are retried until they succeed or the
partition is released, because the offset may only be committed after them.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from agora_kit.consumer import retry
from agora_kit.consumer.config import FailurePolicy
from agora_kit.consumer.deadletter_table import ErrorKind
from agora_kit.consumer.dispatch_base import Control, DispatchBase, wait_or_stop
from agora_kit.consumer.handlers import (
    Decoded,
    HandlerContext,
    PermanentError,
    Poison,
    describe,
    parse,
)
from agora_kit.consumer.retry import Record, RetryRow

log = logging.getLogger(__name__)


class Dispatcher(DispatchBase):
    """Decodes records, calls handlers and applies the failure policy."""

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
            "consumer.retry_scheduled",
            extra={"group": self.group, "event_id": str(envelope.id), "error": error},
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
                extra={
                    "group": self.group,
                    "event_id": str(envelope.id),
                    "attempt": attempt,
                    "error": error,
                    "retry_in": delay,
                },
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
