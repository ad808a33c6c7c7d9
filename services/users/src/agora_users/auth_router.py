"""The ``/auth`` routes: OAuth2 password and refresh grants, logout, verification, reset."""

from __future__ import annotations

import logging
from typing import Annotated

from agora_kit.context import request_id_var
from agora_kit.problems import Problem
from agora_kit.uow import UnitOfWork
from fastapi import APIRouter, BackgroundTasks, Body, Form, Response, status
from fastapi.responses import JSONResponse

from agora_users import recovery, service, sessions
from agora_users.deps import ClientDep, CurrentUserDep, RuntimeDep, UowDep, UsersRuntime
from agora_users.exceptions import OAuthError, invalid_grant
from agora_users.schemas import (
    GIVEN_PASSWORD_MAX,
    LogoutRequest,
    Message,
    OAuthErrorBody,
    PasswordResetConfirm,
    PasswordResetRequest,
    RefreshRequest,
    TokenResponse,
    VerifyEmail,
    normalise_email,
)
from agora_users.sessions import TokenPair

logger = logging.getLogger("agora.users.auth")

router = APIRouter(prefix="/auth", tags=["auth"])

_TOKEN_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": OAuthErrorBody, "description": "RFC 6749 §5.2 error (e.g. invalid_grant)"},
    429: {"model": Problem, "description": "Too many failed attempts (see Retry-After)"},
}
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

FormField = Annotated[str | None, Form()]


def _token_response(pair: TokenPair, rt: UsersRuntime) -> JSONResponse:
    body = TokenResponse(
        access_token=pair.access.token,
        expires_in=rt.settings.access_token_ttl_s,
        refresh_token=pair.refresh_token,
        refresh_token_expires_in=rt.settings.refresh_token_ttl_s,
    )
    return JSONResponse(body.model_dump(), headers=_NO_STORE)


async def _password_grant(
    username: str | None, password: str | None, uow: UowDep, rt: UsersRuntime, client: str | None
) -> TokenPair:
    if not username or not password:
        raise OAuthError("invalid_request", "The password grant needs username and password.")
    try:
        email = normalise_email(username)
    except ValueError:
        # Cannot be an account; answered like any other bad login.
        raise invalid_grant("The email address or the password is not correct.") from None
    if len(password) > GIVEN_PASSWORD_MAX:
        raise invalid_grant("The email address or the password is not correct.")
    return await sessions.login(
        uow=uow,
        passwords=rt.passwords,
        signer=rt.signer,
        settings=rt.settings,
        guard=rt.login_guard,
        email=email,
        password=password,
        client=client,
    )


async def _refresh_grant(refresh_token: str | None, uow: UowDep, rt: UsersRuntime) -> TokenPair:
    if not refresh_token:
        raise OAuthError("invalid_request", "The refresh_token grant needs refresh_token.")
    return await sessions.refresh(
        uow=uow,
        signer=rt.signer,
        settings=rt.settings,
        revoker=rt.revoker,
        refresh_token=refresh_token,
    )


@router.post("/token", response_model=TokenResponse, responses=_TOKEN_ERRORS)
async def token(
    uow: UowDep,
    rt: RuntimeDep,
    client: ClientDep,
    grant_type: FormField = None,
    username: FormField = None,
    password: FormField = None,
    refresh_token: FormField = None,
    scope: FormField = None,
) -> Response:
    """Issue an access token and a refresh token (OAuth2 password or refresh_token grant)."""
    if grant_type == "password":
        pair = await _password_grant(username, password, uow, rt, client)
    elif grant_type == "refresh_token":
        pair = await _refresh_grant(refresh_token, uow, rt)
    elif not grant_type:
        raise OAuthError("invalid_request", "grant_type is required (a form field).")
    else:
        raise OAuthError("unsupported_grant_type", "Use grant_type=password or refresh_token.")
    return _token_response(pair, rt)


@router.post("/refresh", response_model=TokenResponse, responses=_TOKEN_ERRORS)
async def refresh(body: RefreshRequest, uow: UowDep, rt: RuntimeDep) -> Response:
    """Exchange a refresh token for new tokens; a reused refresh token ends its session."""
    return _token_response(await _refresh_grant(body.refresh_token, uow, rt), rt)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={401: {"model": Problem, "description": "Missing or invalid access token"}},
)
async def logout(
    principal: CurrentUserDep,
    uow: UowDep,
    rt: RuntimeDep,
    body: Annotated[LogoutRequest | None, Body()] = None,
) -> Response:
    """Revoke the access token and its session (and the given refresh token's session)."""
    await sessions.logout(
        uow=uow,
        revoker=rt.revoker,
        principal=principal,
        refresh_token=body.refresh_token if body else None,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/verify-email",
    response_model=Message,
    responses={400: {"model": Problem, "description": "Invalid, expired or used token"}},
)
async def verify_email(body: VerifyEmail, uow: UowDep, rt: RuntimeDep) -> Message:
    """Mark the address verified with the one-time token from the verification mail."""
    await service.verify_email(uow=uow, signer=rt.signer, token=body.token)
    return Message(detail="The email address is verified.")


@router.post(
    "/verify-email/resend",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Message,
    responses={401: {"model": Problem, "description": "Missing or invalid access token"}},
)
async def resend_verification(principal: CurrentUserDep, uow: UowDep, rt: RuntimeDep) -> Message:
    """Send a new verification mail for the caller's address (if it is not verified yet)."""
    await service.resend_verification(
        uow=uow,
        signer=rt.signer,
        settings=rt.settings,
        throttle=rt.reset_limits.resend,
        user_id=principal.user_id,
    )
    return Message(detail="If the address still needs verifying, a new link is on its way.")


@router.post(
    "/password-reset",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Message,
    responses={429: {"model": Problem, "description": "Too many requests from this client"}},
)
async def request_password_reset(
    body: PasswordResetRequest,
    uow: UowDep,
    rt: RuntimeDep,
    client: ClientDep,
    background: BackgroundTasks,
) -> Message:
    """Send a reset link if an account uses the address; the answer is the same either way."""
    await recovery.check_reset_client(rt.reset_limits, client)
    # After the response: looking the account up and issuing a token take time only when it
    # exists, and the answer's timing must not tell (OWASP, authentication cheat sheet).
    background.add_task(
        _queue_reset, uow=uow, rt=rt, email=body.email, request_id=request_id_var.get()
    )
    return Message(detail="If an account uses this address, a reset link is on its way.")


async def _queue_reset(
    *, uow: UnitOfWork, rt: UsersRuntime, email: str, request_id: str | None
) -> None:
    token = request_id_var.set(request_id)
    try:
        await recovery.queue_password_reset(
            uow=uow, signer=rt.signer, settings=rt.settings, limits=rt.reset_limits, email=email
        )
    except Exception:
        # Nobody waits for this answer any more: log it, as the request would have.
        logger.exception("password reset request failed after the response")
    finally:
        request_id_var.reset(token)


@router.post(
    "/password-reset/confirm",
    response_model=Message,
    responses={400: {"model": Problem, "description": "Invalid, expired or used token"}},
)
async def confirm_password_reset(
    body: PasswordResetConfirm, uow: UowDep, rt: RuntimeDep, client: ClientDep
) -> Message:
    """Set a new password with the one-time reset token; every session of the account ends."""
    email, revoked = await recovery.confirm_password_reset(
        uow=uow,
        passwords=rt.passwords,
        signer=rt.signer,
        token=body.token,
        new_password=body.new_password,
    )
    await rt.revoker.revoke_best_effort(revoked)
    await rt.login_guard.forget(email=email, client=client)
    return Message(detail="The password has been changed; sign in with the new one.")
