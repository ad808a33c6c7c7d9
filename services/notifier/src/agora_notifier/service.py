"""The notifier's use cases behind the HTTP API."""

from __future__ import annotations

import sqlalchemy as sa
from agora_kit.uow import UnitOfWork
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from agora_notifier import models
from agora_notifier.models import DeliveryStatus
from agora_notifier.schemas import DeliveryPage, DeliveryPublic, Preferences

D = models.delivery
P = models.preference


async def list_deliveries(
    *,
    session: AsyncSession,
    user_id: int,
    status: DeliveryStatus | None,
    limit: int,
    skip: int,
) -> DeliveryPage:
    """Return a page of one user's deliveries, newest first."""
    filters = [D.c.user_id == user_id]
    if status is not None:
        filters.append(D.c.status == status.value)
    rows = (
        await session.execute(
            sa.select(D).where(*filters).order_by(D.c.id.desc()).limit(limit).offset(skip)
        )
    ).all()
    total = (
        await session.execute(sa.select(sa.func.count()).select_from(D).where(*filters))
    ).scalar_one()
    # The columns are the model's fields but for ``error`` (``last_error``); the rest of the
    # row (the template context, the user id, ...) is not for the caller and is ignored.
    items = [
        DeliveryPublic.model_validate({**row._mapping, "error": row.last_error}) for row in rows
    ]
    return DeliveryPage(items=items, total=int(total), skip=skip, limit=limit, offset=skip)


async def get_preferences(*, session: AsyncSession, user_id: int) -> Preferences:
    """Return a user's preferences (item mail is on until turned off)."""
    item_mail = (
        await session.execute(sa.select(P.c.item_mail).where(P.c.user_id == user_id))
    ).scalar_one_or_none()
    return Preferences(item_mail=True if item_mail is None else bool(item_mail))


async def set_preferences(*, uow: UnitOfWork, user_id: int, item_mail: bool) -> Preferences:
    """Store a user's preferences and return them."""
    async with uow:
        stmt = pg_insert(P).values(user_id=user_id, item_mail=item_mail)
        stmt = stmt.on_conflict_do_update(
            index_elements=[P.c.user_id],
            set_={"item_mail": stmt.excluded.item_mail, "updated_at": sa.func.now()},
        )
        await uow.session.execute(stmt)
        await uow.commit()
    return Preferences(item_mail=item_mail)
