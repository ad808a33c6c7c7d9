"""FastAPI dependency aliases of the items service."""

from __future__ import annotations

from typing import Annotated

from agora_kit.consumer.deadletters import DeadLetterStore
from agora_kit.deps import (
    CurrentUserDep,
    SessionDep,
    get_runtime,
    get_settings,
    uow_dependency,
)
from agora_kit.uow import UnitOfWork
from fastapi import Depends

from agora_items.bootstrap import ItemsRuntime
from agora_items.config import ItemsSettings
from agora_items.models import outbox

__all__ = [
    "CurrentUserDep",
    "DeadLetterStoreDep",
    "ItemsSettingsDep",
    "RuntimeDep",
    "SessionDep",
    "UowDep",
]

#: The running service's runtime and settings, typed.
RuntimeDep = Annotated[ItemsRuntime, Depends(get_runtime)]
ItemsSettingsDep = Annotated[ItemsSettings, Depends(get_settings)]

#: A fresh unit of work per request over the service's outbox.
get_uow = uow_dependency(outbox)


async def get_dead_letter_store(rt: RuntimeDep) -> DeadLetterStore:
    """Return the store over the users projection's dead letters."""
    return rt.dead_letters


UowDep = Annotated[UnitOfWork, Depends(get_uow)]
DeadLetterStoreDep = Annotated[DeadLetterStore, Depends(get_dead_letter_store)]
