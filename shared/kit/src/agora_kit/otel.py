"""The OpenTelemetry side of ``agora_kit.tracing``: imported only when tracing is on.

It builds the process's tracer provider from the ``OTEL_*`` variables, instruments FastAPI,
SQLAlchemy, Redis, httpx and aiokafka with the ecosystem's packages, and makes our own spans.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping, MutableSequence, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import (
    ParentBased,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from agora_kit.otel_export import (
    JsonLinesExporter,
)
from agora_kit.otel_sampling import (
    _root_sampler,
    _TraceRoots,
)
from agora_kit.tracing import REQUEST_ID_ATTRIBUTE, TRACES_DIR_ENV

logger = logging.getLogger("agora.tracing")

#: Probes and scrapes come every few seconds; they would drown the requests' traces.
EXCLUDED_URLS = "/health/live,/health/ready,/metrics"
_TRACE_HEADERS = frozenset({"traceparent", "tracestate"})
_PROPAGATOR = TraceContextTextMapPropagator()

_lock = threading.Lock()
_provider: TracerProvider | None = None
_tracer: trace.Tracer | None = None
_instrumentors: list[Any] = []
#: Whether aiokafka's instrumentation injects the producer span's context into the headers.
_kafka_injects = False


def _processors(service: str) -> list[SpanProcessor]:
    processors: list[SpanProcessor] = []
    folder = os.environ.get(TRACES_DIR_ENV, "").strip()
    if folder:
        # Written as each span ends: `agora trace` sees a request's spans at once.
        processors.append(SimpleSpanProcessor(JsonLinesExporter(Path(folder), service)))
    names = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not names and not folder:
        names = "otlp"  # turned on by OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT
    for name in filter(None, (n.strip() for n in names.split(","))):
        if name == "otlp":
            protocol = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            if protocol != "http/protobuf":
                logger.warning("OTLP protocol %r is not installed: using http/protobuf", protocol)
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            processors.append(BatchSpanProcessor(OTLPSpanExporter()))
        elif name == "console":
            processors.append(SimpleSpanProcessor(ConsoleSpanExporter()))
        elif name != "none":
            logger.warning("unknown OTEL_TRACES_EXPORTER %r ignored", name)
    return processors


def configure(service_name: str, *, exporter: SpanExporter | None = None) -> None:
    """Build the tracer provider (once per process) and instrument the libraries.

    With ``exporter`` (tests) spans go there only and the global provider is left alone.
    """
    global _provider, _tracer
    with _lock:
        if _provider is not None:
            return
        attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
        provider = TracerProvider(
            resource=Resource.create(attributes),
            sampler=ParentBased(root=_TraceRoots(_root_sampler())),
            shutdown_on_exit=exporter is None,
        )
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            for processor in _processors(service_name):
                provider.add_span_processor(processor)
            trace.set_tracer_provider(provider)
        _provider, _tracer = provider, provider.get_tracer("agora_kit")
        _instrument_libraries(provider)


def _instrument_libraries(provider: TracerProvider) -> None:
    global _kafka_injects
    from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    for instrumentor in (RedisInstrumentor(), HTTPXClientInstrumentor(), AIOKafkaInstrumentor()):
        instrumentor.instrument(tracer_provider=provider)
        _instrumentors.append(instrumentor)
    _kafka_injects = True


def reset() -> None:
    """Undo ``configure`` (tests): uninstrument and forget the provider."""
    global _provider, _tracer, _kafka_injects
    with _lock:
        for instrumentor in _instrumentors:
            instrumentor.uninstrument()
        _instrumentors.clear()
        _kafka_injects = False
        if _provider is not None:
            _provider.shutdown()
        _provider = _tracer = None


def _get_tracer() -> trace.Tracer:
    # A hook that runs before configure() (a bare script) still gets a working no-op tracer.
    return _tracer if _tracer is not None else trace.get_tracer("agora_kit")


def instrument_app(app: Any) -> None:
    """Make a server span of every request but the probes and scrapes."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=_provider,
        meter_provider=NoOpMeterProvider(),
        excluded_urls=EXCLUDED_URLS,
        # ASGI receive/send spans per message say little and double the span count.
        exclude_spans=["receive", "send"],
    )


def instrument_engine(engine: Any) -> None:
    """Trace one engine's statements (the instrumentor itself instruments once per process)."""
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    tracer = trace.get_tracer("opentelemetry.instrumentation.sqlalchemy", tracer_provider=_provider)
    usage = NoOpMeterProvider().get_meter("agora_kit").create_up_down_counter("unused")
    EngineTracer(tracer, getattr(engine, "sync_engine", engine), usage)  # type: ignore[no-untyped-call]


def traceparent_of(span: Span) -> str | None:
    """The W3C ``traceparent`` naming ``span`` as the parent, or None for an invalid one."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def _parent(traceparent: str | None) -> Context:
    # From an empty context: the parent is the stored one, never whatever runs around us.
    if not traceparent:
        return Context()
    return _PROPAGATOR.extract({"traceparent": traceparent}, context=Context())


def tag_server_span(request_id: str) -> str | None:
    """Set ``agora.request_id`` on the current server span; return its ``traceparent``."""
    span = trace.get_current_span()
    span.set_attribute(REQUEST_ID_ATTRIBUTE, request_id)
    return traceparent_of(span)


def start_enqueue(event_type: str, topic: str, event_id: str) -> tuple[Span, str | None]:
    """Start an ``outbox enqueue`` span under the current one."""
    span = _get_tracer().start_span(
        "outbox enqueue",
        kind=SpanKind.INTERNAL,
        attributes={
            "messaging.destination.name": topic,
            "messaging.message.id": event_id,
            "agora.event_type": event_type,
        },
    )
    return span, traceparent_of(span)


def end_spans(spans: Sequence[Span], *, error: str | None) -> None:
    """End ``spans``, marked failed with ``error`` when given."""
    for span in spans:
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()


def start_publish(topic: str, headers: MutableSequence[tuple[str, bytes]]) -> Span:
    """Start a ``relay publish`` span under the row's stored ``traceparent``.

    The stored trace headers leave ``headers``: the message carries the context of the
    producer span instead (aiokafka's instrumentation injects its own; without it, ours).
    """
    stored: str | None = None
    kept = []
    for name, value in headers:
        if name in _TRACE_HEADERS:
            if name == "traceparent" and stored is None:
                stored = value.decode("latin-1")
        else:
            kept.append((name, value))
    headers[:] = kept
    span = _get_tracer().start_span(
        "relay publish",
        context=_parent(stored),
        kind=SpanKind.PRODUCER,
        attributes={"messaging.system": "kafka", "messaging.destination.name": topic},
    )
    if not _kafka_injects and (own := traceparent_of(span)) is not None:
        headers.append(("traceparent", own.encode()))
    return span


def activate(span: Span) -> AbstractContextManager[Any]:
    """Make ``span`` current in the block without ending it."""
    return trace.use_span(span, end_on_exit=False)


def end_with(span: Span, error: BaseException | None) -> None:
    """End ``span``, failed when ``error``."""
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    span.end()


@contextmanager
def consuming(ctx: Any, envelope: Any) -> Iterator[Span]:
    """A ``consumer handle`` span under the record's ``traceparent`` header (or envelope's).

    ``ctx`` is the handler's ``HandlerContext``, ``envelope`` the decoded ``Envelope``.
    """
    traceparent = next(
        (value.decode("latin-1") for name, value in ctx.record.headers if name == "traceparent"),
        envelope.traceparent,
    )
    with _get_tracer().start_as_current_span(
        "consumer handle",
        context=_parent(traceparent),
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.consumer.group.name": ctx.group,
            "messaging.destination.name": ctx.topic,
            "messaging.destination.partition.id": str(ctx.partition),
            "messaging.kafka.offset": ctx.offset,
            "messaging.message.id": str(envelope.id),
            "agora.event_type": envelope.type,
            "agora.attempt": ctx.attempt,
        },
    ) as span:
        yield span


@contextmanager
def child_span(name: str, attributes: Mapping[str, str | int]) -> Iterator[Span]:
    """A client span of ours under the current span."""
    with _get_tracer().start_as_current_span(
        name, kind=SpanKind.CLIENT, attributes=dict(attributes)
    ) as span:
        yield span
