"""Tracing hooks for the kit: off unless the ``OTEL_*`` variables (or ``AGORA_TRACES_DIR``) ask.

Every hook starts with a check of the module-level ``ENABLED`` flag and returns a shared no-op
when it is False, so a service that does not trace pays a flag check per hook and never
imports OpenTelemetry (the SDK lives behind ``agora_kit.otel``, imported only when on).

Our own spans, each in the trace of the request that caused it:

- ``outbox enqueue`` from ``UnitOfWork.add_event`` until the transaction commits; its
  ``traceparent`` is the one stored in the envelope and the outbox row's headers;
- ``relay publish`` per row, a child of that stored ``traceparent`` (so a batch carrying many
  requests' rows keeps each in its own trace), until the broker acknowledges it;
- ``consumer handle`` per handler attempt, a child of the ``traceparent`` in the record's
  Kafka headers (else the envelope's);
- ``smtp send`` in the notifier (``span``).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Mapping, MutableSequence, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

#: A folder where each process writes its finished spans as JSON lines (``agora up --trace``).
TRACES_DIR_ENV = "AGORA_TRACES_DIR"
#: The attribute of the HTTP server span that carries the request's ``X-Request-ID``.
REQUEST_ID_ATTRIBUTE = "agora.request_id"


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether these variables turn tracing on (``OTEL_SDK_DISABLED=true`` wins)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get(TRACES_DIR_ENV, "").strip():
        return True
    exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    # The OTLP default, but only once somebody says where to: no exporter dials a default.
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    )


#: Read once at import: the hot path checks this flag and nothing else when tracing is off.
ENABLED: bool = wanted()

_NOOP: AbstractContextManager[None] = nullcontext()


def keep_sdk_out() -> None:
    """When off, import redis with the OpenTelemetry SDK hidden (it loads it if it can).

    redis-py (8.x) imports ``opentelemetry.sdk.metrics`` at import time when installed, for
    metrics it only reports once asked to; its import is guarded by ``except ImportError``,
    which a ``None`` in ``sys.modules`` triggers. Only redis's own import is affected.
    """
    if ENABLED or "redis" in sys.modules:
        return
    hidden = "opentelemetry.sdk"
    if hidden in sys.modules:
        return
    sys.modules[hidden] = None  # type: ignore[assignment]
    try:
        import redis  # noqa: F401
    except ImportError:
        pass  # not installed: nothing to keep out
    finally:
        del sys.modules[hidden]


def setup(service_name: str) -> None:
    """Configure the process's tracer provider and instrument the libraries (once, when on)."""
    global ENABLED
    if not ENABLED:
        return
    try:
        from agora_kit import otel
    except ImportError as exc:
        # Asked for, not installed (agora-kit without its `tracing` extra): serve untraced.
        logging.getLogger("agora.tracing").warning(
            "tracing is off: OpenTelemetry is not installed (%s); install agora-kit[tracing]", exc
        )
        ENABLED = False
        return
    otel.configure(service_name)


def instrument_app(app: Any) -> None:
    """Trace the FastAPI app's requests (server spans), when on."""
    if ENABLED:
        from agora_kit import otel

        otel.instrument_app(app)


def instrument_engine(engine: Any) -> None:
    """Trace one SQLAlchemy engine's statements, when on."""
    if ENABLED:
        from agora_kit import otel

        otel.instrument_engine(engine)


def server_span(request_id: str) -> str | None:
    """Tag the current HTTP server span with ``request_id``; return its ``traceparent``."""
    from agora_kit import otel

    return otel.tag_server_span(request_id)


def start_enqueue(event_type: str, topic: str, event_id: str) -> tuple[Any, str | None]:
    """Start an ``outbox enqueue`` span; return it and the ``traceparent`` to store."""
    from agora_kit import otel

    return otel.start_enqueue(event_type, topic, event_id)


def end_spans(spans: Sequence[Any], *, error: str | None = None) -> None:
    """End spans started by ``start_enqueue`` (with an error status when ``error``)."""
    if spans:
        from agora_kit import otel

        otel.end_spans(spans, error=error)


def start_publish(topic: str, headers: MutableSequence[tuple[str, bytes]]) -> Any:
    """Start a ``relay publish`` span under the row's stored ``traceparent``; fix ``headers``."""
    from agora_kit import otel

    return otel.start_publish(topic, headers)


def activate(span: Any) -> AbstractContextManager[Any]:
    """Make ``span`` current (without ending it) inside the block; no-op for None."""
    if span is None:
        return _NOOP
    from agora_kit import otel

    return otel.activate(span)


def end_publish(span: Any, error: BaseException | None) -> None:
    """End a ``relay publish`` span once the broker answered (or failed)."""
    from agora_kit import otel

    otel.end_with(span, error)


def consuming(ctx: Any, envelope: Any) -> AbstractContextManager[Any]:
    """A ``consumer handle`` span for a ``HandlerContext`` and its envelope; no-op when off."""
    if not ENABLED:
        return _NOOP
    from agora_kit import otel

    return otel.consuming(ctx, envelope)


def span(name: str, attributes: Mapping[str, str | int]) -> AbstractContextManager[Any]:
    """A span of ours under the current one (the span, or None when off)."""
    if not ENABLED:
        return _NOOP
    from agora_kit import otel

    return otel.child_span(name, attributes)


def set_attribute(current: Any, key: str, value: str | int) -> None:
    """Set an attribute on a span from ``span`` (None when off: nothing)."""
    if current is not None:
        current.set_attribute(key, value)


@contextmanager
def enabled_for_tests(exporter: Any) -> Iterator[None]:
    """Turn tracing on in this process, spans to ``exporter`` (tests); off again afterwards."""
    global ENABLED
    from agora_kit import otel

    previous = ENABLED
    ENABLED = True
    otel.configure("test", exporter=exporter)
    try:
        yield
    finally:
        ENABLED = previous
        otel.reset()
