"""Changes an owner makes to an item: update, replace, delete (each versioned, each an event)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from agora_contract import ItemDeleted, ItemUpdated, changes_between
from agora_kit.uow import UnitOfWork
from sqlalchemy.ext.asyncio import AsyncSession

from agora_items.currencies import minor_units, price_fits
from agora_items.etags import etag_for, if_match_holds
from agora_items.exceptions import (
    ItemNotFound,
    NotItemOwner,
    PriceConflictsWithItem,
    StaleItem,
)
from agora_items.models import Item, ItemStatus
from agora_items.schemas import ItemReplace
from agora_items.service import (
    MUTABLE_FIELDS,
    _check_price,
    _snapshot,
)


async def _owned_for_update(
    session: AsyncSession, *, item_id: int, actor_id: int, if_match: str | None
) -> Item:
    """Lock the item, then check ownership and the ``If-Match`` precondition."""
    item = await session.scalar(sa.select(Item).where(Item.id == item_id).with_for_update())
    if item is None:
        raise ItemNotFound(item_id)
    if item.owner_id != actor_id:
        raise NotItemOwner(item_id)
    etag = etag_for(item.version)
    if not if_match_holds(if_match, etag):
        raise StaleItem(item_id, etag)
    return item


async def update_item(
    *,
    uow: UnitOfWork,
    item_id: int,
    actor_id: int,
    changes: Mapping[str, Any],
    if_match: str | None = None,
) -> Item:
    """Apply ``changes`` (a PATCH) as the owner; publish ``ItemUpdated`` if anything changed."""
    unknown = set(changes) - set(MUTABLE_FIELDS)
    if unknown:
        raise ValueError(f"not mutable: {', '.join(sorted(unknown))}")
    async with uow:
        session = uow.session
        item = await _owned_for_update(
            session, item_id=item_id, actor_id=actor_id, if_match=if_match
        )
        before = _snapshot(item)
        for name, value in changes.items():
            setattr(item, name, list(value) if name == "tags" else value)
        if "status" in changes:
            item.status = ItemStatus(changes["status"]).value
        if not price_fits(item.price, item.currency):
            if {"price", "currency"} <= changes.keys():
                # Both sent: the body itself is wrong, as the published schema says (422).
                _check_price(item.price, item.currency)
            raise PriceConflictsWithItem(
                item_id, format(item.price, "f"), item.currency, minor_units()[item.currency]
            )
        delta = changes_between(before, _snapshot(item))
        if not delta:
            # Nothing changed: no new version, no event. Detached first, so the rollback
            # that ends the block does not expire the attributes the caller reads.
            session.expunge(item)
            return item
        item.version += 1
        item.updated_at = datetime.now(UTC)
        await session.flush()
        uow.add_event(
            ItemUpdated(item_id=item.id, owner_id=item.owner_id, changes=delta),
            aggregateversion=item.version,
        )
        await uow.commit()
    return item


async def replace_item(
    *,
    uow: UnitOfWork,
    item_id: int,
    actor_id: int,
    item_in: ItemReplace,
    if_match: str | None = None,
) -> Item:
    """Replace every mutable field (a PUT) as the owner; publish ``ItemUpdated`` on change."""
    changes = {name: getattr(item_in, name) for name in MUTABLE_FIELDS}
    return await update_item(
        uow=uow, item_id=item_id, actor_id=actor_id, changes=changes, if_match=if_match
    )


async def delete_item(
    *, uow: UnitOfWork, item_id: int, actor_id: int, if_match: str | None = None
) -> None:
    """Delete an item as its owner and publish ``ItemDeleted`` (reason ``owner_request``)."""
    async with uow:
        session = uow.session
        item = await _owned_for_update(
            session, item_id=item_id, actor_id=actor_id, if_match=if_match
        )
        await session.delete(item)
        await session.flush()
        uow.add_event(
            ItemDeleted(item_id=item.id, owner_id=item.owner_id, reason="owner_request"),
            aggregateversion=item.version + 1,
        )
        await uow.commit()
