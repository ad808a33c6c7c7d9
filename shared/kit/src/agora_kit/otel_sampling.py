"""Which traces are kept: the ones a request or our own span starts."""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    Decision,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanKind

logger = logging.getLogger("agora.tracing")


class _TraceRoots(Sampler):
    """Traces start at requests and our own spans: a parentless client or poll span is noise.

    The relay and the consumer poll the database every second and health probes query it: as
    roots, those statements would each make a trace of one span.
    """

    def __init__(self, delegate: Sampler) -> None:
        self._delegate = delegate

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        """Drop root client spans and aiokafka's per-poll receive spans; else delegate."""
        if kind is SpanKind.CLIENT or (kind is SpanKind.CONSUMER and name.endswith(" receive")):
            return SamplingResult(Decision.DROP)
        return self._delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        """Name the sampler (shown by the SDK)."""
        return f"AgoraTraceRoots{{{self._delegate.get_description()}}}"


def _root_sampler() -> Sampler:
    name = os.environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if name in {"traceidratio", "parentbased_traceidratio"}:
        try:
            return TraceIdRatioBased(float(os.environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0")))
        except ValueError:
            logger.warning("OTEL_TRACES_SAMPLER_ARG is not a number: sampling every trace")
    return ALWAYS_ON
