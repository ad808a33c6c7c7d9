"""Dependency aliases of the notifier's routes."""

from __future__ import annotations

from typing import Annotated

from agora_kit.deadletters import DeadLetterStore
from agora_kit.deps import ContextDep
from agora_kit.uow import UnitOfWork
from fastapi import Depends

from agora_notifier import models


async def get_uow(ctx: ContextDep) -> UnitOfWork:
    """Return a fresh unit of work (the only thing that commits)."""
    return UnitOfWork(ctx.session_factory, outbox=models.outbox)


async def get_dead_letters(ctx: ContextDep) -> DeadLetterStore:
    """Return the store of the notifier's dead letters."""
    store: DeadLetterStore = ctx.extras["dead_letters"]
    return store


UowDep = Annotated[UnitOfWork, Depends(get_uow)]
DeadLetterStoreDep = Annotated[DeadLetterStore, Depends(get_dead_letters)]
