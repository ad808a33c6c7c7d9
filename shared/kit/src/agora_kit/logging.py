"""Structured logs: structlog renders everything (stdlib logging included) with the request id."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer

from agora_kit.context import request_id_var, traceparent_var
from agora_kit.settings import ServiceSettings

#: Marks the root handler we own, so reconfiguring replaces it instead of stacking another.
_HANDLER_MARK = "_agora_handler"


#: Values that error messages echo: the query argument asyncpg refused, pydantic's
#: ``input_value``, a bearer or basic credential. Tracebacks carry no local variables at all.
_ECHOES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(query argument \$\d+: )(?:.*(?= \()|.*)"), r"\1[redacted]"),
    (re.compile(r"(input_value=)(?:.*(?=, input_type=)|.*)"), r"\1[redacted]"),
    (re.compile(r"\b((?:bearer|basic)\s+)[^\s'\",;)\]}]+", re.IGNORECASE), r"\1[redacted]"),
]


def scrub_text(text: str) -> str:
    """Replace the secret values error messages are known to echo with ``[redacted]``."""
    for pattern, replacement in _ECHOES:
        text = pattern.sub(replacement, text)
    return text


def scrub_exception(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Scrub the rendered exception (text or structlog's dict form) and the message."""
    exception = event_dict.get("exception")
    if isinstance(exception, str):
        event_dict["exception"] = scrub_text(exception)
    elif isinstance(exception, list):
        for stack in exception:
            if isinstance(stack, dict) and isinstance(stack.get("exc_value"), str):
                stack["exc_value"] = scrub_text(stack["exc_value"])
    event = event_dict.get("event")
    if isinstance(event, str) and exception is not None:
        event_dict["event"] = scrub_text(event)
    return event_dict


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Write to whatever ``sys.stderr`` is now (test runners swap it), not the one at setup."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def add_request_context(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Add the current request id and trace id (when set) to a log event."""
    request_id = request_id_var.get()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    # Uvicorn attaches an ANSI-coloured copy of its message; JSON logs want only one.
    event_dict.pop("color_message", None)
    traceparent = traceparent_var.get()
    if traceparent is not None:
        # traceparent is version-traceid-parentid-flags; logs correlate on the trace id.
        event_dict.setdefault("trace_id", traceparent.split("-")[1])
    return event_dict


def configure_logging(settings: ServiceSettings) -> None:
    """Route stdlib logging through structlog, JSON or console; safe to call repeatedly."""
    level = logging.getLevelName(settings.log_level.upper())
    if not isinstance(level, int):
        level = logging.INFO
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        add_request_context,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
    ]
    renderer: structlog.types.Processor
    # Never a frame's local variables: they hold request bodies (passwords) and headers
    # (tokens). structlog's dict tracebacks and Rich's console tracebacks show them by default.
    if settings.log_json:
        renderer = structlog.processors.JSONRenderer()
        shared.append(
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))
        )
    else:
        renderer = structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
        shared.append(structlog.processors.format_exc_info)
    shared.append(scrub_exception)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: a later configure_logging call (another app, a test) must take effect.
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = _StderrHandler()
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        # Uvicorn's own handlers print plain text; let its records reach our JSON handler.
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    # The kit writes one JSON access line per request; uvicorn's would duplicate it.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
