"""Dependency aliases of the notifier's routes."""

from __future__ import annotations

from typing import Annotated

from agora_kit.consumer.deadletters import DeadLetterStore
from agora_kit.deps import get_runtime, uow_dependency
from agora_kit.uow import UnitOfWork
from fastapi import Depends

from agora_notifier import models
from agora_notifier.bootstrap import NotifierRuntime

#: The running service's runtime, typed.
RuntimeDep = Annotated[NotifierRuntime, Depends(get_runtime)]

#: A fresh unit of work per request over the service's outbox.
get_uow = uow_dependency(models.outbox)


async def get_dead_letters(rt: RuntimeDep) -> DeadLetterStore:
    """Return the store of the notifier's dead letters."""
    return rt.dead_letters


UowDep = Annotated[UnitOfWork, Depends(get_uow)]
DeadLetterStoreDep = Annotated[DeadLetterStore, Depends(get_dead_letters)]
