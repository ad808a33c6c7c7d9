"""Item use cases: every write goes through the unit of work with exactly one event."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import sqlalchemy as sa
from agora_contract import ItemCreated
from agora_kit.uow import UnitOfWork
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from agora_items.currencies import minor_units, price_fits
from agora_items.exceptions import (
    AccountDeleted,
    ItemNotFound,
    PriceNotInCurrency,
)
from agora_items.models import Item, ItemStatus, UserState
from agora_items.schemas import ItemCreate, SortOrder

#: The fields an owner can change; ``ItemUpdated.changes`` names only these.
MUTABLE_FIELDS: Final = ("name", "description", "price", "currency", "tags", "status")


@dataclass(frozen=True, slots=True)
class ItemFilter:
    """What a list request asks for (already validated by the router)."""

    skip: int = 0
    limit: int = 10
    search: str | None = None
    tags: tuple[str, ...] = ()
    owner_id: int | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    status: ItemStatus | None = None
    currency: str | None = None
    sort: SortOrder = SortOrder.NEWEST


def _snapshot(item: Item) -> dict[str, Any]:
    """Return the mutable fields as their event JSON values (prices as decimal strings)."""
    return {
        "name": item.name,
        "description": item.description,
        "price": format(item.price, "f"),
        "currency": item.currency,
        "tags": list(item.tags),
        "status": str(item.status),
    }


def _check_price(price: Decimal, currency: str) -> None:
    if not price_fits(price, currency):
        raise PriceNotInCurrency(format(price, "f"), currency, minor_units()[currency])


async def ensure_active_user(session: AsyncSession, user_id: int) -> None:
    """Refuse a user the projection marks deleted; hold its row until this transaction ends.

    The shared row lock orders a create against a concurrent ``UserDeleted`` cascade (which
    locks the row exclusively): either the cascade sees the new item and deletes it, or the
    create sees the deleted flag. A user never seen before gets a version-0 row.
    """
    await session.execute(
        pg_insert(UserState)
        .values(user_id=user_id)
        .on_conflict_do_nothing(index_elements=["user_id"])
    )
    deleted = await session.scalar(
        sa.select(UserState.deleted).where(UserState.user_id == user_id).with_for_update(read=True)
    )
    if deleted:
        raise AccountDeleted(user_id)


#: The owner check and the insert in one round trip. ``new_owner`` records a user never seen
#: before (as ``ensure_active_user`` does); ``known_owner`` holds a seen user's row with a shared
#: lock until the transaction ends. The item is inserted only when one of them shows the owner
#: not deleted. No row back means the owner is deleted, or was recorded by a concurrent
#: transaction after this statement's snapshot: ``create_item`` then takes the two-statement path.
_CREATE_ITEM = sa.text(
    """
    WITH new_owner AS (
        INSERT INTO user_state (user_id) VALUES (CAST(:owner_id AS bigint))
        ON CONFLICT (user_id) DO NOTHING
        RETURNING deleted
    ), known_owner AS (
        SELECT deleted FROM user_state WHERE user_id = CAST(:owner_id AS bigint) FOR SHARE
    )
    INSERT INTO item
        (owner_id, name, description, price, currency, tags, status, version,
         created_at, updated_at)
    SELECT CAST(:owner_id AS bigint), CAST(:name AS varchar), CAST(:description AS varchar),
        CAST(:price AS numeric), CAST(:currency AS varchar), CAST(:tags AS varchar[]),
        CAST(:status AS varchar), 1, CAST(:now AS timestamptz), CAST(:now AS timestamptz)
    FROM (SELECT deleted FROM new_owner UNION ALL SELECT deleted FROM known_owner) AS owner
    WHERE NOT owner.deleted
    LIMIT 1
    RETURNING id
    """
)


async def create_item(*, uow: UnitOfWork, owner_id: int, item_in: ItemCreate) -> Item:
    """List a new item owned by ``owner_id`` and publish ``ItemCreated``."""
    _check_price(item_in.price, item_in.currency)
    now = datetime.now(UTC)
    item = Item(
        owner_id=owner_id,
        name=item_in.name,
        description=item_in.description,
        price=item_in.price,
        currency=item_in.currency,
        tags=list(item_in.tags),
        status=ItemStatus.ACTIVE.value,
        version=1,
        created_at=now,
        updated_at=now,
    )
    async with uow:
        session = uow.session
        item_id = await session.scalar(
            _CREATE_ITEM,
            {
                "owner_id": owner_id,
                "name": item.name,
                "description": item.description,
                "price": item.price,
                "currency": item.currency,
                "tags": item.tags,
                "status": item.status,
                "now": now,
            },
        )
        if item_id is None:
            # Raises AccountDeleted, or (the rare race above) locks the owner's row.
            await ensure_active_user(session, owner_id)
            session.add(item)
            await session.flush()
        else:
            # Inserted with Core: the ORM object is built, not loaded, so it stays transient.
            item.id = item_id
        uow.add_event(
            ItemCreated(
                item_id=item.id,
                owner_id=owner_id,
                name=item.name,
                description=item.description,
                price=item.price,
                currency=item.currency,
                tags=list(item.tags),
                status=item.status,
            ),
            aggregateversion=item.version,
        )
        await uow.commit()
    return item


async def get_item(*, session: AsyncSession, item_id: int) -> Item:
    """Return one item; raise ``ItemNotFound``."""
    item = await session.get(Item, item_id)
    if item is None:
        raise ItemNotFound(item_id)
    return item


def _conditions(query: ItemFilter) -> list[sa.ColumnElement[bool]]:
    conditions: list[sa.ColumnElement[bool]] = []
    if query.search:
        # Substring match, case-insensitive; the user's % and _ are literal characters.
        escaped = query.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        conditions.append(
            sa.or_(
                Item.name.ilike(pattern, escape="\\"),
                Item.description.ilike(pattern, escape="\\"),
            )
        )
    if query.tags:
        conditions.append(Item.tags.contains(list(query.tags)))
    if query.owner_id is not None:
        conditions.append(Item.owner_id == query.owner_id)
    if query.min_price is not None:
        conditions.append(Item.price >= query.min_price)
    if query.max_price is not None:
        conditions.append(Item.price <= query.max_price)
    if query.status is not None:
        conditions.append(Item.status == query.status.value)
    if query.currency is not None:
        conditions.append(Item.currency == query.currency)
    return conditions


_ORDER: Final[Mapping[SortOrder, tuple[sa.UnaryExpression[Any], ...]]] = {
    # The id breaks ties, so pages never overlap or skip items with equal keys.
    SortOrder.NEWEST: (Item.created_at.desc(), Item.id.desc()),
    SortOrder.OLDEST: (Item.created_at.asc(), Item.id.asc()),
    SortOrder.PRICE_ASC: (Item.price.asc(), Item.id.asc()),
    SortOrder.PRICE_DESC: (Item.price.desc(), Item.id.desc()),
}


async def list_items(*, session: AsyncSession, query: ItemFilter) -> tuple[list[Item], int]:
    """Return one page of the items matching ``query`` and how many match in all."""
    conditions = _conditions(query)
    total = await session.scalar(sa.select(sa.func.count()).select_from(Item).where(*conditions))
    page = await session.scalars(
        sa.select(Item)
        .where(*conditions)
        .order_by(*_ORDER[query.sort])
        .offset(query.skip)
        .limit(query.limit)
    )
    return list(page), int(total or 0)
