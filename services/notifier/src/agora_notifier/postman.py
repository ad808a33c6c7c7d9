"""Delivery records and attempts: claim before sending, mark after, publish the outcome.

Each email is a ``delivery`` row, unique per (event id, kind, recipient). An attempt locks
the row, moves it to ``sending`` and commits; then sends; then marks it ``sent`` (or
``retrying``/``failed``) and queues ``NotificationSent``/``NotificationFailed`` in the same
transaction. A delivery the handler has just recorded needs no lock of its own: the
handler's transaction takes it to ``sending`` (:meth:`Postman.prepare`), and the send and
mark follow its commit (:meth:`Postman.finish`). A crash between the SMTP server's
acceptance and that mark leaves the row in ``sending``: after ``send_lease_s`` it is sent
again with the same Message-ID, the one duplicate no system can rule out, and a detectable
one."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import TypeVar

import sqlalchemy as sa
from agora_contract import Envelope
from agora_kit import tracing
from agora_kit.consumer import PermanentError, TransientError
from agora_kit.outages import dependency_down
from agora_kit.uow import UnitOfWork
from jinja2 import TemplateError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agora_notifier import marks, models
from agora_notifier.metrics import EmailMetrics, EmailOutcome
from agora_notifier.models import DeliveryStatus
from agora_notifier.postman_config import (
    PostmanConfig,
)
from agora_notifier.rendering import Kind, Renderer, build_message
from agora_notifier.sendpath import Claimed, Outcome, Step, decide, on_send_error, on_throttled
from agora_notifier.smtp import EmailSender, SendError
from agora_notifier.throttle import Throttle

logger = logging.getLogger("agora.notifier.postman")

D = models.delivery
T = TypeVar("T")


class Postman:
    """Makes the attempts of an event's deliveries and records what came of them."""

    def __init__(
        self,
        *,
        session_factory: async_sessionmaker[AsyncSession],
        sender: EmailSender,
        throttle: Throttle,
        renderer: Renderer,
        config: PostmanConfig,
        metrics: EmailMetrics | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._metrics = metrics
        self._sender = sender
        self._throttle = throttle
        self._renderer = renderer
        self.config = config

    def _count(self, outcome: EmailOutcome) -> None:
        if self._metrics is not None:
            self._metrics.count(outcome)

    def _uow(self) -> UnitOfWork:
        return UnitOfWork(self._session_factory, outbox=models.outbox)

    async def deliver(
        self,
        envelope: Envelope,
        *,
        secrets: Mapping[str, str],
        attempt: int,
    ) -> None:
        """Attempt every unfinished delivery of ``envelope``; raise if any must be retried."""
        async with self._session_factory() as session:
            query = sa.select(D.c.id).where(D.c.event_id == envelope.id).order_by(D.c.id)
            ids = (await session.scalars(query)).all()
        final = attempt >= self.config.max_attempts
        _raise_for([(i, await self._attempt(i, secrets, final=final)) for i in ids])

    async def prepare(
        self,
        uow: UnitOfWork,
        deliveries: Sequence[Claimed],
        *,
        secrets: Mapping[str, str],
        attempt: int,
    ) -> list[Prepared]:
        """In the caller's transaction, take fresh deliveries as far as ``sending``.

        The caller has just recorded them, so the rows need no claim; once it commits,
        :meth:`finish` sends what is ready. One transaction where an attempt takes two.
        """
        final = attempt >= self.config.max_attempts
        return [(d.id, await self._prepare(uow, d, secrets, final=final)) for d in deliveries]

    async def finish(self, prepared: Sequence[Prepared], *, attempt: int) -> None:
        """After the :meth:`prepare` transaction committed: send, mark, raise as ``deliver``."""
        final = attempt >= self.config.max_attempts
        outcomes = [
            (i, await self._send(p.delivery, p.message, final=final) if isinstance(p, Ready) else p)
            for i, p in prepared
        ]
        _raise_for(outcomes)

    async def _attempt(
        self, delivery_id: int, secrets: Mapping[str, str], *, final: bool
    ) -> Result:
        """One attempt: claim → decide → build → throttle → mark sending → send → mark."""
        async with self._uow() as uow:
            delivery = await self._claim(uow, delivery_id)
            ready = await self._prepare(uow, delivery, secrets, final=final)
            await uow.commit()
        if isinstance(ready, Ready):
            return await self._send(ready.delivery, ready.message, final=final)
        return ready

    async def _prepare(
        self, uow: UnitOfWork, delivery: Claimed, secrets: Mapping[str, str], *, final: bool
    ) -> Ready | Result:
        """Decide → build → throttle → mark sending, in ``uow`` (the caller commits)."""
        decision = decide(delivery)
        if decision.step is Step.FINISHED:
            if decision.deduplicated:
                self._count(EmailOutcome.DEDUPLICATED)
            return Outcome.DONE, decision.reason
        if decision.step is Step.WAIT:
            return Outcome.RETRY, decision.reason
        if decision.step is Step.SKIP:
            await marks.status(uow, delivery, DeliveryStatus.SKIPPED, error=decision.reason)
            self._count(EmailOutcome.SKIPPED)
            return Outcome.DONE, decision.reason
        if decision.resend:
            logger.warning(
                "resending after an unfinished attempt; a duplicate would share Message-ID %s",
                delivery.message_id,
            )
        try:
            message, subject = self._build(delivery, secrets)
        except (ValueError, TypeError, TemplateError) as exc:
            error = f"cannot build the email: {type(exc).__name__}: {exc}"
            await marks.failed(uow, delivery, error, permanent=True)
            return Outcome.FAILED, error
        if not await self._throttle.allow(delivery.recipient):
            error = "throttled: too many emails to this recipient"
            status = on_throttled(final=final)
            if status is DeliveryStatus.FAILED:
                await marks.failed(uow, delivery, error, permanent=True)
            else:
                await marks.status(uow, delivery, status, error=error)
            self._count(EmailOutcome.THROTTLED)
            return Outcome.RETRY, error
        await marks.sending(uow, delivery, subject)
        return Ready(delivery, message)

    async def _claim(self, uow: UnitOfWork, delivery_id: int) -> Claimed:
        """Lock the delivery row (and see whether its recipient still exists)."""
        lease = timedelta(seconds=self.config.send_lease_s)
        stmt = (
            sa.select(
                D,
                (D.c.sending_at > sa.func.now() - lease).label("in_flight"),
                models.recipient.c.deleted_at,
            )
            .outerjoin(models.recipient, models.recipient.c.user_id == D.c.user_id)
            .where(D.c.id == delivery_id)
            .with_for_update(of=D)
        )
        return Claimed.from_row((await uow.session.execute(stmt)).one())

    def _build(self, delivery: Claimed, secrets: Mapping[str, str]) -> tuple[EmailMessage, str]:
        """The message and its subject (raises on a template or address that cannot be)."""
        rendered = self._renderer.render(Kind(delivery.kind), {**delivery.context, **secrets})
        message = build_message(
            rendered,
            sender=self.config.sender,
            recipient=delivery.recipient,
            recipient_name=delivery.recipient_name,
            message_id=delivery.message_id,
            event_id=delivery.event_id,
            kind=delivery.kind,
            date=datetime.now(UTC),
        )
        return message, rendered.subject

    async def _send(
        self, delivery: Claimed, message: EmailMessage, *, final: bool
    ) -> tuple[Outcome, str]:
        """Hand the message to SMTP, then record what came of it."""
        try:
            attributes = {
                "agora.email_kind": delivery.kind,
                "agora.message_id": delivery.message_id,
            }
            with tracing.span("smtp send", attributes) as span:
                reply = await self._sender.send(
                    message, sender=self.config.sender.addr_spec, recipient=delivery.recipient
                )
                tracing.set_attribute(span, "smtp.reply", reply[:200])
        except SendError as exc:
            self._count(EmailOutcome.FAILED)
            error = str(exc)
            status, outcome = on_send_error(permanent=exc.permanent, final=final)
            await self._marking(lambda: self._after_failure(delivery, error, status), delivery)
            kind = "permanent" if exc.permanent else "transient"
            logger.info("delivery %s failed (%s): %s", delivery.id, kind, error)
            return outcome, error
        self._count(EmailOutcome.SENT)
        await self._marking(lambda: self._after_success(delivery), delivery)
        return Outcome.DONE, "sent"

    async def _marking(self, mark: Callable[[], Awaitable[T]], delivery: Claimed) -> T:
        """Run ``mark`` (one transaction), retrying it while the database is unreachable.

        The email is out at this point: giving up on the first blip would leave the row
        ``sending`` and send it again when the lease runs out.
        """
        deadline = time.monotonic() + self.config.mark_retry_s
        attempt = 0
        while True:
            attempt += 1
            try:
                return await mark()
            except Exception as exc:
                delay = self.config.mark_backoff.delay(attempt)
                if dependency_down(exc) != "database" or time.monotonic() + delay > deadline:
                    raise
                logger.warning(
                    "recording the outcome of delivery %s failed (%s); retrying in %.1f s",
                    delivery.id,
                    type(exc).__name__,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _after_failure(self, row: Claimed, error: str, status: DeliveryStatus) -> None:
        async with self._uow() as uow:
            await marks.failed(uow, row, error, permanent=status is DeliveryStatus.FAILED)
            await uow.commit()

    async def _after_success(self, row: Claimed) -> None:
        async with self._uow() as uow:
            await marks.sent(uow, row)
            await uow.commit()


@dataclass(frozen=True, slots=True)
class Ready:
    """A delivery marked ``sending`` in a transaction, and its message, once that commits."""

    delivery: Claimed
    message: EmailMessage


#: What came of one attempt: its outcome, and the reason or error.
Result = tuple[Outcome, str]
#: A fresh delivery's id and how far :meth:`Postman.prepare` took it.
Prepared = tuple[int, Ready | Result]


def _raise_for(outcomes: Sequence[tuple[int, Result]]) -> None:
    """Raise if a delivery must be retried (transient) or failed for good (permanent)."""
    retry = [
        f"delivery {i}: {detail}" for i, (outcome, detail) in outcomes if outcome is Outcome.RETRY
    ]
    failed = [
        f"delivery {i}: {detail}" for i, (outcome, detail) in outcomes if outcome is Outcome.FAILED
    ]
    # A transient failure keeps the event on the retry path; a permanently failed
    # sibling is then attempted again too (harmless: a refusal delivers nothing).
    if retry:
        raise TransientError("; ".join(retry))
    if failed:
        raise PermanentError("; ".join(failed))
