"""Dependency aliases of the notifier's routes."""

from __future__ import annotations

from typing import Annotated

from agora_kit.consumer.deadletters import DeadLetterStore
from agora_kit.deps import get_context, uow_dependency
from agora_kit.runtime import ServiceContext
from agora_kit.uow import UnitOfWork
from fastapi import Depends

from agora_notifier import models
from agora_notifier.bootstrap import NotifierRuntime
from agora_notifier.config import NotifierSettings

NotifierContext = ServiceContext[NotifierSettings, NotifierRuntime]
#: The running service's context, typed over its settings and runtime.
NotifierContextDep = Annotated[NotifierContext, Depends(get_context)]


#: A fresh unit of work per request over the service's outbox.
get_uow = uow_dependency(models.outbox)


async def get_dead_letters(ctx: NotifierContextDep) -> DeadLetterStore:
    """Return the store of the notifier's dead letters."""
    return ctx.runtime.dead_letters


UowDep = Annotated[UnitOfWork, Depends(get_uow)]
DeadLetterStoreDep = Annotated[DeadLetterStore, Depends(get_dead_letters)]
