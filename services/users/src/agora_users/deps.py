"""Dependency aliases of the users routes (the kit's context, session and auth aliases too)."""

from __future__ import annotations

from typing import Annotated

from agora_kit.deps import AdminDep, CurrentUserDep, SessionDep, get_runtime, uow_dependency
from agora_kit.uow import UnitOfWork
from fastapi import Depends, Request

from agora_users.bootstrap import UsersRuntime
from agora_users.models import OUTBOX

__all__ = [
    "AdminDep",
    "ClientDep",
    "CurrentUserDep",
    "RuntimeDep",
    "SessionDep",
    "UowDep",
    "UsersRuntime",
]

#: The running service's runtime, typed.
RuntimeDep = Annotated[UsersRuntime, Depends(get_runtime)]

#: A fresh unit of work per request over the service's outbox.
get_uow = uow_dependency(OUTBOX)


async def client_address(request: Request) -> str | None:
    """Return the client's address (behind the gateway, uvicorn's proxy headers set it)."""
    return request.client.host if request.client else None


UowDep = Annotated[UnitOfWork, Depends(get_uow)]
ClientDep = Annotated[str | None, Depends(client_address)]
