"""The consumer's handlers: claim the event, apply it, record its emails, deliver them."""

from __future__ import annotations

from agora_contract import Envelope, Event
from agora_kit.consumer import HandlerContext, HandlerTable, PermanentError
from agora_kit.consumer.inbox import claim
from agora_kit.context import request_id_var
from agora_kit.uow import UnitOfWork
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agora_notifier import models
from agora_notifier.planning import PLANNERS, final_attempt, secret_context
from agora_notifier.postman import Postman, Prepared
from agora_notifier.records import record
from agora_notifier.sendpath import Claimed
from agora_notifier.wording import Links


class NotifierHandlers:
    """Handles every event and command the notifier consumes."""

    def __init__(
        self,
        *,
        session_factory: async_sessionmaker[AsyncSession],
        postman: Postman,
        links: Links,
    ) -> None:
        self._session_factory = session_factory
        self._postman = postman
        self._links = links

    def table(self) -> HandlerTable:
        """The handler table for the consumer loop (one entry per handled type)."""
        table = HandlerTable()
        for event_cls in PLANNERS:
            table.add(event_cls, self.handle)
        return table

    async def handle(self, ctx: HandlerContext, envelope: Envelope, event: Event) -> None:
        """Apply ``event`` once (inbox), record its emails, then attempt them."""
        planner = PLANNERS.get(type(event))
        if planner is None:
            raise PermanentError(f"no planner for {envelope.type}")
        # Outcome events carry the causing request's id, so one correlation id spans it all.
        token = request_id_var.set(envelope.correlationid)
        last = final_attempt.set(ctx.attempt >= self._postman.config.max_attempts)
        try:
            secrets = secret_context(event, self._links)
            async with UnitOfWork(self._session_factory, outbox=models.outbox) as uow:
                # The projection change and the delivery rows commit together, once: a
                # redelivery finds the event claimed and only resumes the deliveries.
                session = uow.session
                recorded: list[Claimed] | None = None  # None: a redelivery, look them up
                prepared: list[Prepared] = []
                if await claim(session, models.inbox, group=ctx.group, event_id=envelope.id):
                    planned = await planner(session, envelope, event, self._links)
                    domain = self._postman.config.message_id_domain
                    recorded = await record(session, envelope, planned, domain=domain)
                    if recorded:
                        # Fresh rows go as far as `sending` in this same transaction.
                        prepared = await self._postman.prepare(
                            uow, recorded, secrets=secrets, attempt=ctx.attempt
                        )
                await uow.commit()
            if prepared:
                await self._postman.finish(prepared, attempt=ctx.attempt)
            elif recorded is None:
                await self._postman.deliver(envelope, secrets=secrets, attempt=ctx.attempt)
            # Else nothing planned, or only skipped deliveries (opted out): final as recorded.
        finally:
            final_attempt.reset(last)
            request_id_var.reset(token)
