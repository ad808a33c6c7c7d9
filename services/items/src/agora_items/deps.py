"""FastAPI dependency aliases of the items service."""

from __future__ import annotations

from typing import Annotated

from agora_kit.consumer.deadletters import DeadLetterStore
from agora_kit.deps import CurrentUserDep, SessionDep, get_context, uow_dependency
from agora_kit.runtime import ServiceContext
from agora_kit.uow import UnitOfWork
from fastapi import Depends

from agora_items.bootstrap import ItemsRuntime
from agora_items.config import ItemsSettings
from agora_items.models import outbox

__all__ = [
    "CurrentUserDep",
    "DeadLetterStoreDep",
    "ItemsContextDep",
    "ItemsSettingsDep",
    "SessionDep",
    "UowDep",
]

ItemsContext = ServiceContext[ItemsSettings, ItemsRuntime]
#: The running service's context, typed over its settings and runtime.
ItemsContextDep = Annotated[ItemsContext, Depends(get_context)]


async def get_items_settings(ctx: ItemsContextDep) -> ItemsSettings:
    """Return the running service's settings."""
    return ctx.settings


#: A fresh unit of work per request over the service's outbox.
get_uow = uow_dependency(outbox)


async def get_dead_letter_store(ctx: ItemsContextDep) -> DeadLetterStore:
    """Return the store over the users projection's dead letters."""
    return ctx.runtime.dead_letters


ItemsSettingsDep = Annotated[ItemsSettings, Depends(get_items_settings)]
UowDep = Annotated[UnitOfWork, Depends(get_uow)]
DeadLetterStoreDep = Annotated[DeadLetterStore, Depends(get_dead_letter_store)]
