"""The owner projection of ``users.events``: who is deleted, and the cascade that follows.

Each event is applied in one transaction with its inbox row: the projection update, the
deleted items and their ``ItemDeleted`` outbox rows commit together or not at all, so a
redelivered event (same ``id``) changes nothing and a crash loses nothing.
"""

from __future__ import annotations

import logging
from enum import StrEnum

import sqlalchemy as sa
from agora_contract import Envelope, Event, ItemDeleted, UserDeleted
from agora_kit.consumer.inbox import claim
from agora_kit.uow import UnitOfWork
from sqlalchemy.dialects.postgresql import insert as pg_insert

from agora_items.models import Item, UserState, inbox

logger = logging.getLogger("agora.items.projection")


class Outcome(StrEnum):
    """What applying one user event did."""

    APPLIED = "applied"
    #: The inbox already holds this event id: a redelivery or a replay.
    DUPLICATE = "duplicate"
    #: Its ``aggregateversion`` is not newer than the one applied.
    STALE = "stale"


async def apply_user_event(
    *, uow: UnitOfWork, group: str, envelope: Envelope, event: Event, user_id: int
) -> tuple[Outcome, list[int]]:
    """Apply one event about ``user_id``; return the outcome and the ids of deleted items."""
    async with uow:
        session = uow.session
        if not await claim(session, inbox, group=group, event_id=envelope.id):
            return Outcome.DUPLICATE, []
        await session.execute(
            pg_insert(UserState)
            .values(user_id=user_id)
            .on_conflict_do_nothing(index_elements=["user_id"])
        )
        # Exclusive lock: a concurrent create holds it shared, so the two are ordered.
        state = (
            await session.execute(
                sa.select(UserState.deleted, UserState.version)
                .where(UserState.user_id == user_id)
                .with_for_update()
            )
        ).one()
        version = envelope.aggregateversion
        if version is not None and version <= state.version:
            logger.info(
                "ignoring user event older than the projection",
                extra={"event_id": str(envelope.id), "user_id": user_id, "version": version},
            )
            await uow.commit()  # the inbox row: this id is settled
            return Outcome.STALE, []
        values: dict[str, object] = {"updated_at": sa.func.now()}
        if version is not None:
            values["version"] = version
        deleted: list[int] = []
        if isinstance(event, UserDeleted):
            values["deleted"] = True
            deleted = await _delete_items_of(uow, user_id)
        await session.execute(
            sa.update(UserState).where(UserState.user_id == user_id).values(**values)
        )
        await uow.commit()
    return Outcome.APPLIED, deleted


async def _delete_items_of(uow: UnitOfWork, user_id: int) -> list[int]:
    """Delete every item of ``user_id``, each with its own ``ItemDeleted`` event."""
    rows = (
        await uow.session.execute(
            sa.delete(Item)
            .where(Item.owner_id == user_id)
            .returning(Item.id, Item.version)
            .execution_options(synchronize_session=False)
        )
    ).all()
    for row in sorted(rows, key=lambda r: r.id):
        uow.add_event(
            ItemDeleted(item_id=row.id, owner_id=user_id, reason="owner_deleted"),
            aggregateversion=row.version + 1,
        )
    return sorted(row.id for row in rows)
