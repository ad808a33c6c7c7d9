"""The domain errors services raise; ``agora_kit.error_handlers`` maps them to problems."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from agora_kit.problems import PROBLEM_BASE, problem_type, status_phrase


class DomainError(Exception):
    """Base of the errors services raise; mapped to problem responses in one place."""

    status: ClassVar[int] = 400
    title: ClassVar[str | None] = None
    slug: ClassVar[str | None] = None

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or self.title or status_phrase(self.status))
        self.detail = detail
        self.headers: dict[str, str] = dict(headers or {})
        self.extra: dict[str, Any] = dict(extra or {})

    def problem_type(self) -> str:
        """Return the ``type`` URI of this error."""
        return f"{PROBLEM_BASE}{self.slug}" if self.slug else problem_type(self.status)


class BadRequest(DomainError):  # noqa: N818 - named after the HTTP status
    """The request is malformed in a way validation cannot express."""


class Unauthorized(DomainError):  # noqa: N818 - named after the HTTP status
    """Authentication is missing or invalid (RFC 6750 ``WWW-Authenticate: Bearer``)."""

    status = 401

    def __init__(
        self,
        detail: str | None = None,
        *,
        error: str | None = "invalid_token",
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        challenge = "Bearer"
        if error:
            # The description is ours and fixed per failure kind; quotes would break the header.
            description = (detail or "").replace('"', "'")
            challenge = f'Bearer error="{error}", error_description="{description}"'
        super().__init__(detail, headers={"WWW-Authenticate": challenge}, extra=extra)


class Forbidden(DomainError):  # noqa: N818 - named after the HTTP status
    """The caller is authenticated but not allowed to do this."""

    status = 403


class NotFound(DomainError):  # noqa: N818 - named after the HTTP status
    """The resource does not exist (or the caller may not know it exists)."""

    status = 404


class Conflict(DomainError):  # noqa: N818 - named after the HTTP status
    """The request conflicts with the current state (duplicate, concurrent change)."""

    status = 409


class PreconditionFailed(DomainError):  # noqa: N818 - named after the HTTP status
    """An ``If-Match`` / ``If-None-Match`` precondition did not hold."""

    status = 412


class UnprocessableContent(DomainError):  # noqa: N818 - named after the HTTP status
    """The request is well-formed but cannot be processed as sent."""

    status = 422


class TooManyRequests(DomainError):  # noqa: N818 - named after the HTTP status
    """The caller is throttled; ``Retry-After`` says when to come back."""

    status = 429

    def __init__(
        self, detail: str | None = None, *, retry_after: int, extra: Mapping[str, Any] | None = None
    ) -> None:
        retry = str(max(1, int(retry_after)))
        super().__init__(detail, headers={"Retry-After": retry}, extra=extra)


class ServiceUnavailable(DomainError):  # noqa: N818 - named after the HTTP status
    """A dependency is down; the default ``Retry-After`` comes from the settings."""

    status = 503

    def __init__(
        self,
        detail: str | None = None,
        *,
        retry_after: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        headers = {"Retry-After": str(max(1, int(retry_after)))} if retry_after else None
        super().__init__(detail, headers=headers, extra=extra)
