"""Spans without a server: JSON lines, one file per process (``agora up --trace``)."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import (
    SpanExporter,
    SpanExportResult,
)

logger = logging.getLogger("agora.tracing")


class JsonLinesExporter(SpanExporter):
    """Appends finished spans as JSON lines to ``<folder>/<service>-<pid>.jsonl``."""

    def __init__(self, folder: Path, service: str) -> None:
        self._folder = folder
        self._service = service
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write ``spans``, one JSON object a line."""
        lines = "".join(json.dumps(span_record(span), default=str) + "\n" for span in spans)
        # The pid at export time: a forked worker writes its own file.
        path = self._folder / f"{self._service}-{os.getpid()}.jsonl"
        try:
            with self._lock:
                self._folder.mkdir(parents=True, exist_ok=True)
                with path.open("a", encoding="utf-8") as out:
                    out.write(lines)
        except OSError:
            logger.exception("cannot write spans to %s", path)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to release: every export opens and closes the file."""


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """One span as the JSON object ``agora trace`` reads."""
    ctx = span.get_span_context()
    assert ctx is not None
    parent = span.parent
    return {
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "parent_id": f"{parent.span_id:016x}" if parent is not None else None,
        "name": span.name,
        "service": span.resource.attributes.get("service.name", ""),
        "kind": span.kind.name,
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
    }
