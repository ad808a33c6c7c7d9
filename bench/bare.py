"""The pinned peer of the benchmark: what a developer writes without Agora's guarantees.

FastAPI with a pydantic body; one ``AsyncSession`` per request from an ``async_sessionmaker``
over ``create_async_engine(asyncpg, pool_size=10)``. ``POST /items`` does ``session.add(row)``
and ``await session.commit()`` and returns the row; ``GET /items/{id}`` does
``await session.get(Item, id)``. ORM, no auth, no middleware, no outbox.

The benchmark starts it as the services run (``uvicorn --factory bare:create_app
--no-access-log``, one worker) with ``BENCH_BARE_DATABASE_URL`` naming its own database on
the stack's Postgres. Do not tune it: the ratios in docs/performance.md are against this code.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal

import sqlalchemy as sa
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """The bare app's declarative base."""


class Item(Base):
    """The same columns as Agora's items table (no owner check, no version logic)."""

    __tablename__ = "bare_items"

    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    owner_id: Mapped[int] = mapped_column(sa.BigInteger)
    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str | None] = mapped_column(sa.Text)
    price: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2))
    currency: Mapped[str] = mapped_column(sa.String(3))
    tags: Mapped[list[str]] = mapped_column(ARRAY(sa.String(50)))
    status: Mapped[str] = mapped_column(sa.String(20))
    version: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class ItemIn(BaseModel):
    """The body of ``POST /items``."""

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    price: Decimal = Field(ge=0, max_digits=12, decimal_places=2)
    currency: str = Field(default="EUR", min_length=3, max_length=3)
    tags: list[str] = Field(default_factory=list, max_length=10)


class ItemOut(BaseModel):
    """One item as JSON."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    owner_id: int
    name: str
    description: str | None
    price: Decimal
    currency: str
    tags: list[str]
    status: str
    version: int
    created_at: datetime
    updated_at: datetime


def create_app() -> FastAPI:
    """Build the bare app over ``BENCH_BARE_DATABASE_URL``."""
    engine = create_async_engine(os.environ["BENCH_BARE_DATABASE_URL"], pool_size=10)
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/items", status_code=201, response_model=ItemOut)
    async def create_item(item_in: ItemIn) -> Item:
        now = datetime.now(UTC)
        async with sessions() as session:
            row = Item(
                owner_id=1,
                status="active",
                version=1,
                created_at=now,
                updated_at=now,
                **item_in.model_dump(),
            )
            session.add(row)
            await session.commit()
            return row

    @app.get("/items/{item_id}", response_model=ItemOut)
    async def read_item(item_id: int) -> Item:
        async with sessions() as session:
            row = await session.get(Item, item_id)
            if row is None:
                raise HTTPException(404)
            return row

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
