"""Pure ASGI middleware: request id, trace parent, access log, metrics, process time, 500s."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agora_kit import tracing
from agora_kit.context import request_id_var, traceparent_var
from agora_kit.error_handlers import unhandled_problem
from agora_kit.metrics import UNMATCHED_ROUTE, HttpMetrics

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# W3C Trace Context: version 00..fe, non-zero trace id and parent id, flags.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
#: Probes hit these every few seconds; their access lines go to debug.
_QUIET_PATHS = frozenset({"/health/live", "/health/ready", "/metrics"})

access_logger = structlog.stdlib.get_logger("agora.access")


def sane_request_id(value: str | None) -> str | None:
    """Return ``value`` when it is a safe request id to echo and log, else None."""
    if value is not None and _REQUEST_ID.fullmatch(value):
        return value
    return None


def valid_traceparent(value: str | None) -> str | None:
    """Return ``value`` when it is a well-formed W3C ``traceparent``, else None."""
    if value is None:
        return None
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None:
        return None
    version, trace_id, parent_id, _flags = match.groups()
    if version == "ff" or set(trace_id) == {"0"} or set(parent_id) == {"0"}:
        return None
    return match.group(0)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _route_template(scope: Scope) -> str:
    """Return the matched route's full template (``/api/v1/items/{item_id}``)."""
    # FastAPI (>= 0.16x) keeps included routers nested: scope["route"] has only the router's
    # own path, the full one lives in its effective route context. Fall back when absent.
    fastapi_scope = scope.get("fastapi")
    effective = (
        fastapi_scope.get("effective_route_context") if isinstance(fastapi_scope, dict) else None
    )
    path = getattr(effective, "path_format", None)
    if not isinstance(path, str) or not path:
        route = scope.get("route")
        path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else UNMATCHED_ROUTE


class RequestContextMiddleware:
    """Set the request id and trace parent, log and measure every request, render crashes.

    It sits inside CORS and outside everything else, so even an unhandled error becomes a
    problem response that carries ``X-Request-ID`` (and CORS headers), is counted in the
    metrics and is logged once with its traceback.
    """

    def __init__(self, app: ASGIApp, *, show_process_time: bool, retry_after_s: int) -> None:
        self.app = app
        self.show_process_time = show_process_time
        self.retry_after_s = retry_after_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = sane_request_id(_header(scope, b"x-request-id")) or uuid.uuid4().hex
        traceparent = valid_traceparent(_header(scope, b"traceparent"))
        if tracing.ENABLED:
            # The server span (opentelemetry's middleware runs outside this one) is the parent.
            traceparent = tracing.server_span(request_id) or traceparent
        id_token = request_id_var.set(request_id)
        trace_token = traceparent_var.set(traceparent)
        metrics = self._metrics(scope)
        started = time.perf_counter()
        # 499 (nginx's "client closed request") unless a response starts.
        status = 499
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = int(message["status"])
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
                if self.show_process_time:
                    headers["X-Process-Time"] = f"{time.perf_counter() - started:.6f}"
            await send(message)

        if metrics is not None:
            metrics.in_flight.inc()
        try:
            try:
                await self.app(scope, receive, send_wrapper)
            except Exception as exc:
                if response_started:
                    access_logger.error("response failed after start", exc_info=exc)
                    raise
                response = unhandled_problem(scope, exc, retry_after_s=self.retry_after_s)
                await response(scope, receive, send_wrapper)
        finally:
            duration = time.perf_counter() - started
            route = _route_template(scope)
            method = str(scope.get("method", ""))
            if metrics is not None:
                metrics.in_flight.dec()
                metrics.observe(method=method, route=route, status=status, duration_s=duration)
            log = access_logger.debug if scope.get("path") in _QUIET_PATHS else access_logger.info
            log(
                "request",
                method=method,
                path=scope.get("path"),
                route=route,
                status=status,
                duration_ms=round(duration * 1000, 3),
                client=_client(scope),
            )
            request_id_var.reset(id_token)
            traceparent_var.reset(trace_token)

    @staticmethod
    def _metrics(scope: Scope) -> HttpMetrics | None:
        app: Any = scope.get("app")
        ctx = getattr(getattr(app, "state", None), "ctx", None)
        metrics = getattr(ctx, "http_metrics", None)
        return metrics if isinstance(metrics, HttpMetrics) else None


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None
