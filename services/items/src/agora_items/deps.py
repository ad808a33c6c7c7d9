"""FastAPI dependency aliases of the items service."""

from __future__ import annotations

from typing import Annotated

from agora_kit.deadletters import DeadLetterStore
from agora_kit.deps import ContextDep, CurrentUserDep, SessionDep
from agora_kit.uow import UnitOfWork
from fastapi import Depends

from agora_items.config import ItemsSettings
from agora_items.models import outbox, tables

__all__ = [
    "CurrentUserDep",
    "DeadLetterStoreDep",
    "ItemsSettingsDep",
    "SessionDep",
    "UowDep",
]


async def get_items_settings(ctx: ContextDep) -> ItemsSettings:
    """Return the running service's settings."""
    settings = ctx.settings
    if not isinstance(settings, ItemsSettings):  # create_app always passes ItemsSettings
        raise TypeError("the items app runs with ItemsSettings")
    return settings


async def get_uow(ctx: ContextDep) -> UnitOfWork:
    """Return a fresh unit of work (it opens its session on ``async with``)."""
    return UnitOfWork(ctx.session_factory, outbox=outbox)


async def get_dead_letter_store(ctx: ContextDep) -> DeadLetterStore:
    """Return the store over the users projection's dead letters."""
    return DeadLetterStore(ctx.session_factory, table=tables.dead_letter, retry_table=tables.retry)


ItemsSettingsDep = Annotated[ItemsSettings, Depends(get_items_settings)]
UowDep = Annotated[UnitOfWork, Depends(get_uow)]
DeadLetterStoreDep = Annotated[DeadLetterStore, Depends(get_dead_letter_store)]
