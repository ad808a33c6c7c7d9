"""The ``/users`` routes: thin handlers that parse, authorize and call a use case."""

from __future__ import annotations

from typing import Annotated

from agora_kit.app import API_PREFIX
from agora_kit.params import BIGINT_MAX, MAX_OFFSET
from agora_kit.problems import Problem
from fastapi import APIRouter, Path, Query, Response, status

from agora_users import account, admin, service
from agora_users.deps import (
    AdminDep,
    ClientDep,
    CurrentUserDep,
    RuntimeDep,
    SessionDep,
    UowDep,
)
from agora_users.schemas import (
    EmailChange,
    PasswordChange,
    UserCreate,
    UserPage,
    UserProfile,
    UserPublic,
    UserUpdate,
)
from agora_users.security import Revocation

router = APIRouter(prefix="/users", tags=["users"])

_AUTH_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "Missing, invalid or revoked access token"},
}
UserId = Annotated[int, Path(ge=1, le=BIGINT_MAX, description="The user's id.")]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UserPublic,
    responses={409: {"model": Problem, "description": "The email address is taken"}},
)
async def register(user_in: UserCreate, uow: UowDep, rt: RuntimeDep, response: Response) -> object:
    """Create an account; a verification mail is sent to the address."""
    user = await service.register_user(
        uow=uow, passwords=rt.passwords, signer=rt.signer, settings=rt.settings, user_in=user_in
    )
    response.headers["Location"] = f"{API_PREFIX}{router.prefix}/{user.id}"
    return user


@router.get("/me", response_model=UserPublic, responses=_AUTH_ERRORS)
async def read_me(principal: CurrentUserDep, session: SessionDep) -> object:
    """Return the caller's account."""
    return await service.get_me(session=session, user_id=principal.user_id)


@router.patch("/me", response_model=UserPublic, responses=_AUTH_ERRORS)
async def update_me(changes: UserUpdate, principal: CurrentUserDep, uow: UowDep) -> object:
    """Change the caller's profile (the display name)."""
    return await service.update_me(uow=uow, user_id=principal.user_id, changes=changes)


@router.delete("/me", status_code=status.HTTP_204_NO_CONTENT, responses=_AUTH_ERRORS)
async def delete_me(principal: CurrentUserDep, uow: UowDep, rt: RuntimeDep) -> Response:
    """Delete the caller's account and its personal data; every session ends."""
    revoked = await account.delete_user(
        uow=uow,
        user_id=principal.user_id,
        current=Revocation(jti=principal.jti, expires_at=principal.exp),
    )
    await rt.revoker.revoke_best_effort(revoked)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put(
    "/me/email",
    response_model=UserPublic,
    responses={
        **_AUTH_ERRORS,
        403: {"model": Problem, "description": "The current password is wrong"},
        409: {"model": Problem, "description": "The email address is taken"},
        429: {"model": Problem, "description": "Too many wrong passwords"},
    },
)
async def change_email(
    body: EmailChange, principal: CurrentUserDep, uow: UowDep, rt: RuntimeDep, client: ClientDep
) -> object:
    """Change the caller's email address (current password required); verify it again."""
    return await account.change_email(
        uow=uow,
        passwords=rt.passwords,
        signer=rt.signer,
        settings=rt.settings,
        guard=rt.login_guard,
        user_id=principal.user_id,
        new_email=body.new_email,
        current_password=body.current_password,
        client=client,
    )


@router.put(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        **_AUTH_ERRORS,
        403: {"model": Problem, "description": "The current password is wrong"},
        429: {"model": Problem, "description": "Too many wrong passwords"},
    },
)
async def change_password(
    body: PasswordChange,
    principal: CurrentUserDep,
    uow: UowDep,
    rt: RuntimeDep,
    client: ClientDep,
) -> Response:
    """Change the caller's password; the account's other sessions end."""
    revoked = await account.change_password(
        uow=uow,
        passwords=rt.passwords,
        guard=rt.login_guard,
        user_id=principal.user_id,
        current_password=body.current_password,
        new_password=body.new_password,
        current_jti=principal.jti,
        client=client,
    )
    await rt.revoker.revoke_best_effort(revoked)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "",
    response_model=UserPage,
    responses={**_AUTH_ERRORS, 403: {"model": Problem, "description": "Not an admin"}},
)
async def list_users(
    _admin: AdminDep,
    session: SessionDep,
    skip: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Accounts to skip.")] = 0,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size.")] = 20,
    search: Annotated[
        str | None,
        Query(min_length=1, max_length=100, description="Substring of the email or name."),
    ] = None,
) -> UserPage:
    """List accounts by id, optionally filtered (admin only)."""
    users, total = await admin.list_users(session=session, skip=skip, limit=limit, search=search)
    return UserPage(
        items=[UserPublic.model_validate(u) for u in users], total=total, skip=skip, limit=limit
    )


@router.get(
    "/{user_id}",
    response_model=UserProfile,
    responses={404: {"model": Problem, "description": "No such user"}},
)
async def read_profile(user_id: UserId, session: SessionDep) -> object:
    """Return a user's public profile (id and name)."""
    return await service.get_public(session=session, user_id=user_id)
