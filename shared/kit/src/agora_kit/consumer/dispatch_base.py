"""The dispatcher's ground: one bounded handler call, and durable dead-letter writes.

A record's offset may only be committed after what it caused is stored, so every write
here is retried until it commits or the partition is released.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Protocol

from agora_contract import Envelope
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agora_kit import tracing
from agora_kit.consumer.config import ConsumerConfig, FailurePolicy
from agora_kit.consumer.deadletter_table import ErrorKind
from agora_kit.consumer.deadletters import store_dead_letter
from agora_kit.consumer.handlers import (
    Decoded,
    Handler,
    HandlerContext,
    Poison,
    describe,
    type_label,
)
from agora_kit.consumer.metrics import ConsumerMetrics
from agora_kit.consumer.retry import Record
from agora_kit.consumer.tables import ConsumerTables
from agora_kit.context import request_id_var

log = logging.getLogger(__name__)


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


class DispatchBase:
    """What every failure policy builds on: the handler call and durable writes."""

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
                    "consumer.store_failed",
                    extra={"group": self.group, "error": describe(exc), "retry_in": delay},
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
                extra={
                    "group": self.group,
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "kind": kind.value,
                    "error": error,
                },
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
