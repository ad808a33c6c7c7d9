"""Domain errors of the users service; the kit renders DomainErrors, OAuthError is ours."""

from __future__ import annotations

from agora_kit.errors import BadRequest, Conflict, DomainError, NotFound, Unauthorized
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response


class EmailTaken(Conflict):
    """Another account already uses the address."""

    slug = "email-taken"

    def __init__(self) -> None:
        super().__init__("An account with this email address already exists.")


class UserNotFound(NotFound):
    """No such user."""

    slug = "user-not-found"

    def __init__(self) -> None:
        super().__init__("No such user.")


class InvalidOneTimeToken(BadRequest):
    """A verification or reset token that is malformed, expired, used or superseded."""

    slug = "invalid-token"

    def __init__(self) -> None:
        super().__init__("The token is invalid, expired or already used.")


class WrongPassword(DomainError):  # noqa: N818 - reads as the problem it reports
    """The current password given to confirm a sensitive change is wrong."""

    status = 403
    slug = "wrong-password"

    def __init__(self) -> None:
        super().__init__("The current password is not correct.")


class AccountGone(Unauthorized):
    """The token is valid but its account no longer exists or is disabled."""

    def __init__(self) -> None:
        super().__init__("The account of this token no longer exists or is disabled.")


class OAuthError(Exception):
    """A token-endpoint error, answered per RFC 6749 §5.2 (``{"error": ..., ...}``)."""

    def __init__(self, error: str, description: str, *, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status


def invalid_grant(description: str = "The credentials or the grant are not valid.") -> OAuthError:
    """Return the one error every bad login or refresh gets (no hint which part was wrong)."""
    return OAuthError("invalid_grant", description)


async def _on_oauth_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OAuthError)
    # RFC 6749 §5.1: token responses, errors included, must not be cached.
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Basic"
    return JSONResponse(
        {"error": exc.error, "error_description": exc.description},
        status_code=exc.status,
        headers=headers,
    )


def install_oauth_errors(app: FastAPI) -> None:
    """Answer OAuthError as RFC 6749 §5.2 JSON."""
    app.add_exception_handler(OAuthError, _on_oauth_error)
