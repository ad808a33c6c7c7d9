"""Tables of the items database: items, the owner projection, and the kit's tables."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

import sqlalchemy as sa
from agora_kit.consumer import consumer_tables
from agora_kit.consumer.inbox import inbox_table
from agora_kit.db import make_metadata
from agora_kit.outbox import outbox_table
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Prices are stored exactly: at most 10 integer digits and 2 decimals.
PRICE_PRECISION = 12
PRICE_SCALE = 2
NAME_MAX = 200
DESCRIPTION_MAX = 5000


class ItemStatus(StrEnum):
    """Where an item is in its life; new items are ``active``."""

    ACTIVE = "active"
    INACTIVE = "inactive"
    SOLD = "sold"


class Base(DeclarativeBase):
    """Declarative base on the service's metadata (Agora's naming convention)."""

    metadata = make_metadata()


class Item(Base):
    """An item a user listed; ``version`` counts its changes (ETag, aggregateversion)."""

    __tablename__ = "item"
    __table_args__ = (
        sa.CheckConstraint("price > 0", name="price_positive"),
        sa.CheckConstraint("version >= 1", name="version_positive"),
        sa.CheckConstraint("char_length(name) BETWEEN 1 AND 200", name="name_length"),
        sa.CheckConstraint(
            "description IS NULL OR char_length(description) <= 5000", name="description_length"
        ),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_code"),
        sa.CheckConstraint("cardinality(tags) <= 20", name="tags_count"),
        # Listing filters: an owner's items newest first, and "all items with these tags".
        sa.Index("ix_item_owner_id_created_at", "owner_id", "created_at"),
        sa.Index("ix_item_created_at", "created_at"),
        sa.Index("ix_item_price", "price"),
        sa.Index("ix_item_tags", "tags", postgresql_using="gin"),
        # Substring search (ILIKE '%term%') needs trigram indexes to stay off a full scan.
        sa.Index(
            "ix_item_name_trgm",
            "name",
            postgresql_using="gin",
            postgresql_ops={"name": "gin_trgm_ops"},
        ),
        sa.Index(
            "ix_item_description_trgm",
            "description",
            postgresql_using="gin",
            postgresql_ops={"description": "gin_trgm_ops"},
        ),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(always=False), primary_key=True)
    owner_id: Mapped[int] = mapped_column(sa.BigInteger)
    name: Mapped[str] = mapped_column(sa.String(NAME_MAX))
    description: Mapped[str | None] = mapped_column(sa.String(DESCRIPTION_MAX))
    price: Mapped[Decimal] = mapped_column(sa.Numeric(PRICE_PRECISION, PRICE_SCALE))
    currency: Mapped[str] = mapped_column(sa.String(3))
    tags: Mapped[list[str]] = mapped_column(
        ARRAY(sa.String(32)), server_default=sa.text("'{}'::varchar[]")
    )
    status: Mapped[str] = mapped_column(sa.String(32), server_default=ItemStatus.ACTIVE.value)
    version: Mapped[int] = mapped_column(sa.Integer, server_default=sa.text("1"))
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )


class UserState(Base):
    """What items knows about a user: only the id, a deleted flag and the applied version.

    No personal data lives here (only the users service keeps any), so ``UserDeleted`` has
    nothing to erase.
    """

    __tablename__ = "user_state"

    user_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    deleted: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    #: The highest ``aggregateversion`` applied; 0 when only seen through a create.
    version: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    updated_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )


metadata = Base.metadata
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
#: The consumer loop's dead-letter and retry tables; dead letters feed through the outbox.
tables = consumer_tables(metadata, outbox=outbox)
