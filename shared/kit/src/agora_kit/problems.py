"""RFC 9457 problem details: the body's model, the response, and echoed input made safe."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from agora_contract.secrets import is_secret_name
from pydantic import BaseModel, ConfigDict
from starlette.responses import JSONResponse, Response
from starlette.types import Scope

from agora_kit.context import request_id_var

PROBLEM_MEDIA_TYPE = "application/problem+json"


PROBLEM_BASE = "https://agora.dev/problems/"


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


def status_phrase(status: int) -> str:
    """The HTTP reason phrase of ``status`` (a generic one for unknown codes)."""
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
        "title": title or status_phrase(status),
        "status": status,
        "detail": detail if detail is not None else status_phrase(status),
        "instance": scope.get("path"),
        "request_id": request_id_var.get(),
    }
    if extra:
        body.update({k: v for k, v in extra.items() if k not in body})
    return ProblemResponse(body, status_code=status, headers=headers)


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
