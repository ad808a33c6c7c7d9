"""The unit of work: one session, one transaction, the domain write and its events together.

``async with uow:`` opens a session; the service writes through ``uow.session`` and queues
events with ``uow.add_event``; ``await uow.commit()`` writes the queued events as outbox rows
and commits, the only place in a service that commits. Leaving the block without
``commit()``, or through an exception, rolls everything back: no row, no outbox row.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa
from agora_contract import Envelope, Event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agora_kit import tracing
from agora_kit._aio import shielded
from agora_kit.context import request_id_var, traceparent_var
from agora_kit.outbox import OutboxMessage, enqueue_many


class UnitOfWorkError(RuntimeError):
    """The unit of work was used outside its ``async with`` block, or re-entered."""


class UnitOfWork:
    """A transaction over one session that commits the domain write and its outbox rows."""

    def __init__(
        self, session_factory: async_sessionmaker[AsyncSession], *, outbox: sa.Table
    ) -> None:
        self._session_factory = session_factory
        self.outbox = outbox
        self._session: AsyncSession | None = None
        self._pending: list[OutboxMessage] = []
        self._events: list[Envelope] = []
        #: ``outbox enqueue`` spans, ended at commit (only when tracing is on).
        self._spans: list[Any] = []

    @property
    def session(self) -> AsyncSession:
        """Return the open session (only inside ``async with``)."""
        if self._session is None:
            raise UnitOfWorkError("the unit of work is not open: use `async with uow:`")
        return self._session

    def _require_open(self) -> AsyncSession:
        return self.session

    @property
    def events(self) -> tuple[Envelope, ...]:
        """Return the envelopes queued since the last commit (what ``commit`` will write)."""
        return tuple(self._events)

    async def __aenter__(self) -> Self:
        if self._session is not None:
            raise UnitOfWorkError("the unit of work is already open; it is not re-entrant")
        self._session = self._session_factory()
        self._clear()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session, self._session = self._session, None
        self._clear()
        if session is not None:
            # Shielded: a request cancelled mid-exit must still return a clean connection
            # to the pool, never one inside a half-finished transaction.
            await shielded(self._discard(session))

    @staticmethod
    async def _discard(session: AsyncSession) -> None:
        try:
            await session.rollback()
        finally:
            await session.close()

    def _clear(self, *, committed: bool = False) -> None:
        self._pending.clear()
        self._events.clear()
        if self._spans:
            tracing.end_spans(self._spans, error=None if committed else "rolled back")
            self._spans.clear()

    def add_event(
        self,
        event: Event,
        *,
        subject: str | None = None,
        aggregateversion: int | None = None,
    ) -> Envelope:
        """Queue ``event`` for this transaction and return its envelope (id made here)."""
        self._require_open()  # the envelope id belongs to this transaction
        event_id = uuid.uuid4()
        traceparent = traceparent_var.get()
        if tracing.ENABLED:
            span, traceparent = tracing.start_enqueue(event.event_type, event.topic, str(event_id))
            self._spans.append(span)
        envelope = Envelope.wrap(
            event,
            subject=subject,
            id=event_id,
            time=datetime.now(UTC),
            correlationid=request_id_var.get(),
            traceparent=traceparent,
            aggregateversion=aggregateversion,
        )
        self._events.append(envelope)
        self._pending.append(
            OutboxMessage(
                topic=event.topic,
                key=envelope.kafka_key(),
                value=envelope.to_bytes(),
                headers=envelope.kafka_headers(),
                event_id=envelope.id,
            )
        )
        return envelope

    def add_message(
        self,
        topic: str,
        key: str | bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]] = (),
        *,
        event_id: uuid.UUID | None = None,
    ) -> None:
        """Queue a raw message (e.g. a dead-letter feed copy) for this transaction."""
        self._require_open()
        self._pending.append(
            OutboxMessage(topic=topic, key=key, value=value, headers=headers, event_id=event_id)
        )

    async def commit(self) -> None:
        """Write the queued messages as outbox rows and commit, all in one transaction."""
        session = self.session
        # Flush the domain writes first: an aggregate's row is locked before its outbox rows
        # get their ids, so two writes to one aggregate get ids in commit order.
        await session.flush()
        await enqueue_many(session, self.outbox, list(self._pending))
        await session.commit()
        self._clear(committed=True)

    async def rollback(self) -> None:
        """Discard the session's changes and the queued messages."""
        session = self.session
        self._clear()
        await session.rollback()
