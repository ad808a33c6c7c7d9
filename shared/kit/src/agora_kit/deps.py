"""FastAPI dependency aliases over the running service's context."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import httpx
import sqlalchemy as sa
from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from agora_kit.auth import Principal
from agora_kit.auth_deps import (
    AdminDep,
    CurrentUserDep,
    OptionalUserDep,
    current_user,
    optional_user,
    require_admin,
)
from agora_kit.runtime import AnyContext
from agora_kit.settings import ServiceSettings
from agora_kit.uow import UnitOfWork

__all__ = [
    "AdminDep",
    "ContextDep",
    "CurrentUserDep",
    "HttpClientDep",
    "OptionalUserDep",
    "Principal",
    "RedisDep",
    "SessionDep",
    "SettingsDep",
    "current_user",
    "get_context",
    "get_runtime",
    "get_settings",
    "optional_user",
    "require_admin",
    "uow_dependency",
]


async def get_context(request: Request) -> AnyContext:
    """Return the running service's context.

    A service types it with its own alias, e.g.
    ``Annotated[ServiceContext[ItemsSettings, ItemsRuntime], Depends(get_context)]``.
    """
    ctx: AnyContext = request.app.state.ctx
    return ctx


ContextDep = Annotated[AnyContext, Depends(get_context)]


def uow_dependency(outbox: sa.Table) -> Callable[[AnyContext], Awaitable[UnitOfWork]]:
    """The dependency that gives each request a fresh unit of work over ``outbox``.

    A service writes ``get_uow = uow_dependency(models.outbox)`` and
    ``UowDep = Annotated[UnitOfWork, Depends(get_uow)]``.
    """

    async def get_uow(ctx: ContextDep) -> UnitOfWork:
        """Return a fresh unit of work (it opens its session on ``async with``)."""
        return UnitOfWork(ctx.session_factory, outbox=outbox)

    return get_uow


async def get_settings(ctx: ContextDep) -> ServiceSettings:
    """Return the service settings."""
    settings: ServiceSettings = ctx.settings
    return settings


async def get_runtime(ctx: ContextDep) -> Any:
    """Return the running service's runtime.

    A service types it with its own alias: ``Annotated[ItemsRuntime, Depends(get_runtime)]``.
    """
    return ctx.runtime


async def get_redis(ctx: ContextDep) -> Redis:
    """Return the process Redis client."""
    return ctx.redis


async def get_http_client(ctx: ContextDep) -> httpx.AsyncClient:
    """Return the process HTTP client."""
    return ctx.http


async def get_session(ctx: ContextDep) -> AsyncIterator[AsyncSession]:
    """Yield a read session (writes go through the unit of work, which commits)."""
    async with ctx.session_factory() as session:
        yield session


SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]
RedisDep = Annotated[Redis, Depends(get_redis)]
HttpClientDep = Annotated[httpx.AsyncClient, Depends(get_http_client)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
