"""Per-request context carried into events: the request id and the W3C trace parent."""

from __future__ import annotations

from contextvars import ContextVar

#: The current request's ``X-Request-ID``; becomes an event's ``correlationid``.
request_id_var: ContextVar[str | None] = ContextVar("agora_request_id", default=None)

#: The current W3C ``traceparent`` (when tracing is on); copied into the event envelope.
traceparent_var: ContextVar[str | None] = ContextVar("agora_traceparent", default=None)
