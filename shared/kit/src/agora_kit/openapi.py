"""Make a service's OpenAPI document tell the truth about its error responses.

FastAPI documents every response under the route's media type (``application/json``) and
only the statuses a route declares. Every error of ours is ``application/problem+json``
(RFC 9457), and some come from the kit rather than the route: a dependency that is down
(503), a body that cannot be parsed (400), a missing or refused token (401/403), an unknown
id in the path (404), an ``If-Match`` that no longer holds (412). ``truthful_openapi``
rewrites the generated document once, so clients and fuzzers such as schemathesis see the
responses the service really sends.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI

from agora_kit.problems import PROBLEM_MEDIA_TYPE

PROBLEM_REF = "#/components/schemas/Problem"
_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}

#: Statuses every operation can answer, and why (the description shown in the docs).
_ALWAYS = {
    422: "Validation error",
    503: "A dependency (database, Redis, broker) is unavailable; retry after `Retry-After`",
}


def _description(status: int, reason: str | None = None) -> str:
    return reason or HTTPStatus(status).phrase


def _is_problem(content: dict[str, Any]) -> bool:
    """Whether a ``content`` entry documents a problem body (or nothing in particular)."""
    schema = content.get("schema") or {}
    return not schema or schema.get("$ref") == PROBLEM_REF


def _document_problems(operation: dict[str, Any]) -> None:
    """Add the kit's error statuses to ``operation`` and render every error as a problem."""
    responses: dict[str, Any] = operation.setdefault("responses", {})
    wanted: dict[int, str] = dict(_ALWAYS)
    if "requestBody" in operation:
        wanted[400] = "The body cannot be parsed"
        wanted[413] = "The body is too large"
    if operation.get("security"):
        wanted[401] = "Missing or invalid access token"
        wanted[403] = "The token's user may not do this"
    params = operation.get("parameters", [])
    if any(p.get("in") == "path" for p in params):
        wanted[404] = "Not found"
    if any(p.get("in") == "header" and p.get("name", "").lower() == "if-match" for p in params):
        wanted[412] = "`If-Match` does not name the current version"
    for status, reason in wanted.items():
        responses.setdefault(str(status), {"description": _description(status, reason)})
    for code, response in responses.items():
        if not code.isdigit() or int(code) < 400:
            continue
        content: dict[str, Any] = response.setdefault("content", {})
        json_body = content.get("application/json")
        if json_body is not None and _is_problem(json_body):
            del content["application/json"]
        content.setdefault(PROBLEM_MEDIA_TYPE, {"schema": {"$ref": PROBLEM_REF}})


def rewrite_error_responses(document: dict[str, Any]) -> dict[str, Any]:
    """Rewrite ``document`` in place (see the module's docstring) and return it."""
    for path_item in document.get("paths", {}).values():
        for method, operation in path_item.items():
            if method in _METHODS:
                _document_problems(operation)
    return document


def truthful_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """Return an ``app.openapi`` replacement that rewrites FastAPI's document once."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = rewrite_error_responses(generate())
        return app.openapi_schema

    return openapi
