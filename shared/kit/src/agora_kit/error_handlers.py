"""Every error an app can raise, mapped to a problem response in one place."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from agora_kit.errors import DomainError
from agora_kit.outages import DEPENDENCY_ERRORS, dependency_down, unstorable_value
from agora_kit.problems import problem_response, status_phrase, validation_errors

logger = logging.getLogger("agora.errors")


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
    detail = exc.detail if isinstance(exc.detail, str) else status_phrase(exc.status_code)
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
