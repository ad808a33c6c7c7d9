"""Refuse input no route can store or echo, before any route sees it (pure ASGI middleware).

Postgres ``text`` cannot hold NUL, and UTF-8 cannot encode a lone surrogate (``"\\ud800"`` is
valid JSON): either reached the driver or the 422 renderer and became a 500. ``NaN``,
``Infinity`` and numbers beyond the double range (``1e400``) are not JSON (RFC 8259 §6) and
broke the 422 body that echoed them. One check here covers every route and every field:

- a JSON body (``application/json``, ``*+json``) is parsed once, strictly: non-finite numbers,
  integers longer than Python parses, invalid UTF-8 and too-deep nesting are refused, and every
  key and string is searched for NUL and lone surrogates;
- a form body (``application/x-www-form-urlencoded``), the query string and the path are
  searched for NUL.

A refusal is a 422 problem shaped like FastAPI's own (``errors[].loc`` names the field; the
offending value is never echoed). Bodies larger than ``max_body_bytes`` are passed on
unchecked: the framework answers them 413.
"""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agora_kit.problems import problem_response

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Deeper JSON than this is refused (the json module would recurse until RecursionError).
MAX_JSON_DEPTH = 64


class BadInput(Exception):  # noqa: N818 - a signal, not an error the app raises
    """One refused value: where it was and why."""

    def __init__(self, loc: list[str | int], msg: str, type_: str) -> None:
        super().__init__(msg)
        self.loc = loc
        self.msg = msg
        self.type = type_


def _refuse_constant(name: str) -> Any:
    raise BadInput(["body"], f"{name} is not a JSON number: numbers must be finite", "json_invalid")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadInput(["body"], f"the number {text[:20]} is out of range", "json_invalid")
    return value


def string_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored or echoed (NUL, lone surrogate), or None when it can."""
    if "\x00" in value:
        return "the text contains a NUL character"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "the text contains a lone surrogate, which is not Unicode text"
    return None


def check_json_value(document: Any) -> None:
    """Raise ``BadInput`` for a key or string with NUL or a lone surrogate, or too deep nesting."""
    # Iterative, so a deep document cannot exhaust the stack here.
    stack: list[tuple[Any, list[str | int]]] = [(document, ["body"])]
    while stack:
        value, loc = stack.pop()
        if len(loc) > MAX_JSON_DEPTH:
            raise BadInput(loc[:3], f"JSON nested deeper than {MAX_JSON_DEPTH}", "json_invalid")
        if isinstance(value, str):
            why = string_problem(value)
            if why:
                raise BadInput(loc, why, "string_unstorable")
        elif isinstance(value, dict):
            for key, item in value.items():
                why = string_problem(key)
                if why:
                    raise BadInput(loc, f"a key: {why}", "string_unstorable")
                stack.append((item, [*loc, key]))
        elif isinstance(value, list):
            stack.extend((item, [*loc, index]) for index, item in enumerate(value))


def parse_json_strictly(body: bytes) -> Any:
    """Parse a JSON body as the routes will, refusing what they cannot store or echo."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput(["body"], "the body is not UTF-8", "json_invalid") from None
    try:
        document = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except BadInput:
        raise
    except json.JSONDecodeError:
        return None  # the framework reports where the syntax error is
    except RecursionError:
        raise BadInput(["body"], "JSON nested too deeply", "json_invalid") from None
    except ValueError:
        # int() refuses more than 4300 digits (CVE-2020-10735's limit).
        raise BadInput(["body"], "a number has too many digits", "json_invalid") from None
    check_json_value(document)
    return document


def _check_pairs(pairs: list[tuple[str, str]], where: str) -> None:
    for key, value in pairs:
        why = string_problem(key) or string_problem(value)
        if why:
            name = key if string_problem(key) is None else "?"
            raise BadInput([where, name], why, "string_unstorable")


def _content_type(scope: Scope) -> str:
    for key, value in scope.get("headers", ()):
        if key == b"content-type":
            return str(value.decode("latin-1")).split(";", 1)[0].strip().lower()
    return ""


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


class InputGuardMiddleware:
    """Answer 422 to input that would otherwise reach the database or renderer and fail."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check one request, then pass it on with its body replayed."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self._check_url(scope)
        except BadInput as bad:
            await _refuse(scope, receive, send, bad)
            return
        content_type = _content_type(scope)
        is_form = content_type == "application/x-www-form-urlencoded"
        if scope.get("method") not in _BODY_METHODS or not (_is_json(content_type) or is_form):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        size, complete = 0, False
        while size <= self.max_body_bytes:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # the client went away: let the app see it
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                complete = True
                break
        if complete:
            body = b"".join(bytes(m.get("body", b"")) for m in messages)
            try:
                if is_form:
                    _check_pairs(_form_pairs(body), "body")
                elif body:
                    parse_json_strictly(body)
            except BadInput as bad:
                await _refuse(scope, receive, send, bad)
                return
        pending = list(messages)

        async def replay() -> Message:
            if pending:
                return pending.pop(0)
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    def _check_url(scope: Scope) -> None:
        path = str(scope.get("path", ""))
        if "\x00" in path:
            raise BadInput(["path"], "the path contains a NUL character", "string_unstorable")
        query = scope.get("query_string", b"")
        # A NUL can only arrive percent-encoded: parse the query only when one may be there.
        if b"%00" in query:
            _check_pairs(parse_qsl(query.decode("latin-1"), keep_blank_values=True), "query")


def _form_pairs(body: bytes) -> list[tuple[str, str]]:
    return parse_qsl(body.decode("latin-1"), keep_blank_values=True)


async def _refuse(scope: Scope, receive: Receive, send: Send, bad: BadInput) -> None:
    response = problem_response(
        scope,
        422,
        detail="The request does not match the expected schema.",
        extra={"errors": [{"loc": bad.loc, "msg": bad.msg, "type": bad.type}]},
    )
    await response(scope, receive, send)
