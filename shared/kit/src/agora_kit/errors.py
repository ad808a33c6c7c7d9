"""RFC 9457 problem details for every error, and the domain errors services raise."""

from __future__ import annotations

import errno
import json
import logging
import math
import socket
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, ClassVar

import httpx
import redis.exceptions
import sqlalchemy.exc
from agora_contract.secrets import is_secret_name
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from agora_kit.context import request_id_var

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://agora.dev/problems/"

logger = logging.getLogger("agora.errors")


#: ``OSError`` numbers that mean "could not reach it", as opposed to local I/O failures.
_CONNECT_ERRNOS = frozenset(
    {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT, errno.ECONNRESET}
)

_SLUGS: dict[int, str] = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    412: "precondition-failed",
    413: "content-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    428: "precondition-required",
    429: "too-many-requests",
    500: "internal-error",
    503: "service-unavailable",
}


class ProblemError(BaseModel):
    """One validation failure: where, what and which kind."""

    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """The RFC 9457 body every error response carries (documented in OpenAPI)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
    errors: list[ProblemError] | None = None


def problem_type(status: int) -> str:
    """Return the problem ``type`` URI for a status (``about:blank`` when it has no slug)."""
    slug = _SLUGS.get(status)
    return f"{PROBLEM_BASE}{slug}" if slug else "about:blank"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def renderable(value: Any) -> Any:
    """Return ``value`` with what JSON in UTF-8 cannot carry made printable.

    Non-finite floats become their name (``"inf"``) and lone surrogates U+FFFD: an echoed input
    must never turn a 4xx into a 500 while its body is rendered.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return value
    if isinstance(value, Mapping):
        return {renderable(k): renderable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [renderable(v) for v in value]
    return value


class ProblemResponse(JSONResponse):
    """``application/problem+json`` that renders whatever the problem echoes."""

    media_type = PROBLEM_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        """Serialise strictly; on a value JSON or UTF-8 cannot carry, serialise a cleaned copy."""
        try:
            return json.dumps(
                content, ensure_ascii=False, allow_nan=False, separators=(",", ":")
            ).encode("utf-8")
        except ValueError:  # UnicodeEncodeError is one too
            return json.dumps(
                renderable(content), ensure_ascii=False, allow_nan=False, separators=(",", ":")
            ).encode("utf-8")


def problem_response(
    scope: Scope,
    status: int,
    *,
    detail: str | None = None,
    title: str | None = None,
    type_: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Response:
    """Build an ``application/problem+json`` response for the request in ``scope``."""
    body: dict[str, Any] = {
        "type": type_ or problem_type(status),
        "title": title or _phrase(status),
        "status": status,
        "detail": detail if detail is not None else _phrase(status),
        "instance": scope.get("path"),
        "request_id": request_id_var.get(),
    }
    if extra:
        body.update({k: v for k, v in extra.items() if k not in body})
    return ProblemResponse(body, status_code=status, headers=headers)


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
        super().__init__(detail or self.title or _phrase(self.status))
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


#: Exception classes that may mean a dependency is down (``dependency_down`` decides).
DEPENDENCY_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    sqlalchemy.exc.DBAPIError,
    sqlalchemy.exc.TimeoutError,
    httpx.TransportError,
    OSError,
)


#: SQLSTATEs of a server that is unreachable or restarting: connection exceptions (08),
#: shutdown, crash and "starting up" (57P01-57P03), too many connections (53300).
_DOWN_SQLSTATE_PREFIXES = ("08", "57P01", "57P02", "57P03", "53300")


def _sqlstate(orig: BaseException | None) -> str:
    """The SQLSTATE of a driver error (asyncpg's, as SQLAlchemy's adapter or its cause)."""
    for candidate in (orig, getattr(orig, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str) and code:
            return code
    return ""


def dependency_down(exc: BaseException) -> str | None:
    """Name the dependency when ``exc`` means it is unreachable or too slow, else None."""
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return "redis"
    if isinstance(exc, sqlalchemy.exc.TimeoutError):
        return "database"
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        orig = exc.orig
        if (
            exc.connection_invalidated
            or isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError)
            or isinstance(orig, OSError | TimeoutError)
            or type(orig).__name__ in {"CannotConnectNowError", "TooManyConnectionsError"}
            or _sqlstate(orig).startswith(_DOWN_SQLSTATE_PREFIXES)
        ):
            return "database"
        return None
    if isinstance(exc, httpx.TransportError | TimeoutError | ConnectionError | socket.gaierror) or (
        isinstance(exc, OSError) and exc.errno in _CONNECT_ERRNOS
    ):
        return _origin(exc)
    return None


def unstorable_value(exc: BaseException) -> str | None:
    """Name the kind when ``exc`` means the database refused a value the client sent, else None.

    A backstop: SQLSTATE class 22 (data exception: out of range, NUL, bad encoding) from the
    server, and asyncpg's client-side refusal to encode an argument (an int beyond 64 bits, a
    lone surrogate), which it raises before anything is sent.
    """
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        orig = exc.orig
        code = _sqlstate(orig)
        if code.startswith("22"):
            return f"SQLSTATE {code}"
        cause = getattr(orig, "__cause__", None)
        if type(orig).__name__ == "DataError" or isinstance(
            cause, OverflowError | UnicodeEncodeError
        ):
            return type(cause or orig).__name__
        return None
    if isinstance(exc, OverflowError | UnicodeEncodeError) and _origin(exc) == "database":
        return type(exc).__name__
    return None


def _origin(exc: BaseException) -> str:
    """Guess which client raised a bare socket error (asyncpg's connect does) from its frames."""
    tb = exc.__traceback__
    origin = "upstream"
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        if module.startswith(("asyncpg", "sqlalchemy")):
            origin = "database"
        elif module.startswith("redis"):
            origin = "redis"
        elif module.startswith(("httpx", "httpcore")):
            origin = "http"
        tb = tb.tb_next
    return origin


def _redact(value: Any) -> Any:
    """Drop values under sensitive keys from an echoed input."""
    if isinstance(value, Mapping):
        return {
            k: ("[redacted]" if isinstance(k, str) and is_secret_name(k) else _redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return renderable(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


def validation_errors(raw: Sequence[Any]) -> list[dict[str, Any]]:
    """Return ``[{loc, msg, type[, input]}]``; never echo secrets or whole bodies."""
    errors: list[dict[str, Any]] = []
    for err in raw:
        loc = [p if isinstance(p, int) else str(p) for p in err.get("loc", ())]
        item: dict[str, Any] = {
            "loc": loc,
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        sensitive = any(isinstance(p, str) and is_secret_name(p) for p in loc)
        # A "missing" error's input is the parent object: echoing it could leak siblings.
        if "input" in err and not sensitive and item["type"] != "missing":
            item["input"] = _jsonable(_redact(err["input"]))
        errors.append(item)
    return errors


def install_error_handlers(app: FastAPI, *, retry_after_s: int) -> None:
    """Map every error the app can raise to a problem response."""

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 405:
            # Starlette's Allow names the methods of the first route the path matched only.
            allowed = allowed_methods(request.app.router.routes, request.scope)
            if allowed:
                exc = StarletteHTTPException(405, headers={"Allow": ", ".join(allowed)})
        return http_exception_problem(request.scope, exc)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return problem_response(
            request.scope,
            422,
            detail="The request does not match the expected schema.",
            extra={"errors": validation_errors(exc.errors())},
        )

    async def on_domain(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DomainError)
        return domain_problem(request.scope, exc, retry_after_s=retry_after_s)

    async def on_unhandled(request: Request, exc: Exception) -> Response:
        return unhandled_problem(request.scope, exc, retry_after_s=retry_after_s)

    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(DomainError, on_domain)
    # Dependency failures become 503 inside the stack, so middleware sees a response.
    for cls in DEPENDENCY_ERRORS:
        app.add_exception_handler(cls, on_unhandled)
    app.add_exception_handler(Exception, on_unhandled)


#: The methods a 405's ``Allow`` may name (HEAD follows GET in Starlette's routes).
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> list[str]:
    """Return every method some route fully serves at the path of ``scope`` (a 405's Allow).

    Each method is tried against every route's ``matches`` (the public routing API), so
    routers FastAPI includes lazily are searched as well.
    """
    allowed = []
    for method in _METHODS:
        probe = {
            "type": "http",
            "method": method,
            "path": scope.get("path", ""),
            "root_path": scope.get("root_path", ""),
            "headers": [],
            "query_string": b"",
        }
        if any(route.matches(probe)[0] == Match.FULL for route in routes):
            allowed.append(method)
    return allowed


def http_exception_problem(scope: Scope, exc: StarletteHTTPException) -> Response:
    """Render a framework ``HTTPException`` (404/405 from routing, 413, ...) as a problem."""
    detail = exc.detail if isinstance(exc.detail, str) else _phrase(exc.status_code)
    headers = dict(exc.headers or {})
    if exc.status_code == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    return problem_response(scope, exc.status_code, detail=detail, headers=headers)


def domain_problem(scope: Scope, exc: DomainError, *, retry_after_s: int) -> Response:
    """Render a ``DomainError`` as a problem."""
    headers = dict(exc.headers)
    if exc.status in (429, 503):
        headers.setdefault("Retry-After", str(retry_after_s))
    return problem_response(
        scope,
        exc.status,
        detail=exc.detail,
        title=exc.title,
        type_=exc.problem_type(),
        headers=headers,
        extra=exc.extra,
    )


def unhandled_problem(scope: Scope, exc: BaseException, *, retry_after_s: int) -> Response:
    """Render an exception no handler took: 503 when a dependency is down, else a logged 500."""
    if isinstance(exc, StarletteHTTPException):
        return http_exception_problem(scope, exc)
    if isinstance(exc, DomainError):
        return domain_problem(scope, exc, retry_after_s=retry_after_s)
    if isinstance(exc, RequestValidationError):
        return problem_response(
            scope,
            422,
            detail="The request does not match the expected schema.",
            extra={"errors": validation_errors(exc.errors())},
        )
    unstorable = unstorable_value(exc)
    if unstorable is not None:
        # Input validation let a value through that the database refuses: the request's fault.
        logger.warning(
            "unstorable value on %s %s: %s", scope.get("method"), scope.get("path"), unstorable
        )
        return problem_response(
            scope,
            422,
            detail="A value in the request is out of range or cannot be stored.",
        )
    down = dependency_down(exc)
    if down is not None:
        # The driver's own message, not str(exc): SQLAlchemy's carries the statement's parameters.
        cause = exc.orig if isinstance(exc, sqlalchemy.exc.DBAPIError) else exc
        logger.warning("dependency unavailable: %s (%s: %s)", down, type(cause).__name__, cause)
        return problem_response(
            scope,
            503,
            detail=f"A dependency ({down}) is unavailable; retry later.",
            headers={"Retry-After": str(retry_after_s)},
            extra={"dependency": down},
        )
    logger.error("unhandled error on %s %s", scope.get("method"), scope.get("path"), exc_info=exc)
    return problem_response(scope, 500, detail="An unexpected error occurred.")
