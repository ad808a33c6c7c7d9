"""The users-projection consumer: ``users.events`` in order, applied with the inbox."""

from __future__ import annotations

import logging

from agora_contract import (
    Envelope,
    UserDeleted,
    UserEmailChanged,
    UserRegistered,
    UserUpdated,
)
from agora_kit.consumer import ConsumerLoop, FailurePolicy, HandlerContext, HandlerTable
from agora_kit.uow import UnitOfWork
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agora_items.config import ItemsSettings
from agora_items.models import outbox, tables
from agora_items.projection import Outcome, apply_user_event

logger = logging.getLogger("agora.items.consumer")


class UserProjection:
    """Handlers that keep ``user_state`` current and cascade ``UserDeleted`` to items."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._session_factory = session_factory

    async def on_user_event(
        self,
        ctx: HandlerContext,
        envelope: Envelope,
        event: UserRegistered | UserUpdated | UserEmailChanged | UserDeleted,
    ) -> None:
        """Apply one user event (every type advances the version; deletion cascades)."""
        outcome, deleted = await apply_user_event(
            uow=UnitOfWork(self._session_factory, outbox=outbox),
            group=ctx.group,
            envelope=envelope,
            event=event,
            user_id=event.user_id,
        )
        if outcome is Outcome.APPLIED and isinstance(event, UserDeleted):
            logger.info(
                "user deleted: items removed",
                extra={"user_id": event.user_id, "items": len(deleted)},
            )

    def handlers(self) -> HandlerTable:
        """Return the handler table (personal fields in the events are never stored)."""
        table = HandlerTable()
        table.add(UserRegistered, self.on_user_event)
        table.add(UserUpdated, self.on_user_event)
        table.add(UserEmailChanged, self.on_user_event)
        table.add(UserDeleted, self.on_user_event)
        return table


def build_consumer(
    settings: ItemsSettings,
    *,
    session_factory: async_sessionmaker[AsyncSession],
    registry: CollectorRegistry,
) -> ConsumerLoop:
    """Build the in-order consumer of the users topic (not started)."""
    return ConsumerLoop(
        settings=settings,
        group=settings.consumer_group,
        topics=[settings.users_topic],
        handlers=UserProjection(session_factory).handlers(),
        # A projection must see a user's events in order: a failing one is retried in
        # place while other partitions flow.
        policy=FailurePolicy.IN_ORDER,
        session_factory=session_factory,
        tables=tables,
        registry=registry,
    )
