"""The caller as FastAPI dependencies: the bearer token checked once per request, then the
user or the admin it names."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPBearer

from agora_kit.auth import (
    JwtVerifier,
    Principal,
)
from agora_kit.errors import Forbidden, Unauthorized

_STATE_KEY = "agora.principal"


def bearer_token(authorization: str | None) -> str | None:
    """Return the token of a ``Bearer`` Authorization header; None when there is no header."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Use 'Authorization: Bearer <token>'.", error="invalid_request")
    return token


async def authenticate(
    state: dict[str, Any], verifier: JwtVerifier, authorization: str | None
) -> Principal | None:
    """Verify the request's bearer token once per request (cached in the ASGI scope state)."""
    token = bearer_token(authorization)
    if token is None:
        return None
    cached = state.get(_STATE_KEY)
    if isinstance(cached, tuple) and cached[0] == token:
        principal: Principal = cached[1]
        return principal
    principal = await verifier.verify(token)
    state[_STATE_KEY] = (token, principal)
    return principal


# Declares the scheme in OpenAPI; verification is ours, so it never raises by itself.
_bearer_scheme = HTTPBearer(auto_error=False, bearerFormat="JWT", scheme_name="AccessToken")


async def optional_user(
    request: Request, _scheme: Any = Security(_bearer_scheme)
) -> Principal | None:
    """Return the caller when a token is sent (401 if it is invalid), else None."""
    verifier: JwtVerifier = request.app.state.ctx.verifier
    state: dict[str, Any] = request.scope.setdefault("state", {})
    return await authenticate(state, verifier, request.headers.get("authorization"))


async def current_user(principal: Principal | None = Depends(optional_user)) -> Principal:
    """Return the caller; 401 without a valid token."""
    if principal is None:
        # RFC 6750 §3.1: no error code when the request carried no credentials at all.
        raise Unauthorized("Authentication is required.", error=None)
    return principal


OptionalUserDep = Annotated[Principal | None, Depends(optional_user)]


CurrentUserDep = Annotated[Principal, Depends(current_user)]


async def require_admin(principal: CurrentUserDep) -> Principal:
    """Return the caller if it is an admin; 403 otherwise."""
    if not principal.is_admin:
        raise Forbidden("This action requires the admin role.")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]
