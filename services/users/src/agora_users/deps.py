"""Dependency aliases of the users routes (the kit's context, session and auth aliases too)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from agora_kit.app import ServiceContext
from agora_kit.deps import AdminDep, ContextDep, CurrentUserDep, SessionDep
from agora_kit.uow import UnitOfWork
from fastapi import Depends, Request
from redis.asyncio import Redis

from agora_users.config import UsersSettings
from agora_users.keystore import KeyStore
from agora_users.models import OUTBOX
from agora_users.passwords import Passwords
from agora_users.recovery import ResetLimits
from agora_users.security import LoginGuard, Revoker
from agora_users.tokens import TokenSigner

__all__ = [
    "AdminDep",
    "ClientDep",
    "CurrentUserDep",
    "RuntimeDep",
    "SessionDep",
    "UowDep",
    "UsersRuntime",
]

RUNTIME_KEY = "users"


@dataclass(frozen=True, slots=True)
class UsersRuntime:
    """The users service's own collaborators, built once in the lifespan."""

    settings: UsersSettings
    keys: KeyStore
    signer: TokenSigner
    passwords: Passwords
    revoker: Revoker
    login_guard: LoginGuard
    reset_limits: ResetLimits

    @classmethod
    def build(cls, settings: UsersSettings, keys: KeyStore, redis: Redis) -> UsersRuntime:
        """Wire the collaborators from the settings, the key store and the Redis client."""
        return cls(
            settings=settings,
            keys=keys,
            signer=TokenSigner(keys, settings),
            passwords=Passwords.from_settings(settings),
            revoker=Revoker(redis, leeway_s=settings.jwt_leeway_s),
            login_guard=LoginGuard(redis, settings),
            reset_limits=ResetLimits(redis, settings),
        )


def runtime_of(ctx: ServiceContext) -> UsersRuntime:
    """Return the runtime stored in the service context."""
    runtime = ctx.extras[RUNTIME_KEY]
    assert isinstance(runtime, UsersRuntime)
    return runtime


async def get_runtime(ctx: ContextDep) -> UsersRuntime:
    """Return the users service's runtime."""
    return runtime_of(ctx)


async def get_uow(ctx: ContextDep) -> UnitOfWork:
    """Return a fresh unit of work over the service's database and outbox."""
    return UnitOfWork(ctx.session_factory, outbox=OUTBOX)


async def client_address(request: Request) -> str | None:
    """Return the client's address (behind the gateway, uvicorn's proxy headers set it)."""
    return request.client.host if request.client else None


RuntimeDep = Annotated[UsersRuntime, Depends(get_runtime)]
UowDep = Annotated[UnitOfWork, Depends(get_uow)]
ClientDep = Annotated[str | None, Depends(client_address)]
