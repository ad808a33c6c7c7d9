"""``agora trace``: one request's spans, gathered from every process's files, as a timed tree.

With ``agora up --trace`` each service process writes its finished spans as JSON lines to
``<AGORA_HOME>/traces/<service>-<pid>.jsonl`` (``agora_kit.otel.JsonLinesExporter``). Spans
of one request join across processes by trace id and parent span id; the request's HTTP
server span carries its ``X-Request-ID`` as the ``agora.request_id`` attribute.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agora_kit.tracing import REQUEST_ID_ATTRIBUTE


def traces_dir(state_dir: Path) -> Path:
    """Where ``agora up --trace`` has the services write their spans."""
    return state_dir / "traces"


@dataclass(frozen=True, slots=True)
class SpanLine:
    """One finished span as read back from a file."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    service: str
    start_ns: int
    end_ns: int
    status: str
    attributes: dict[str, Any]

    @property
    def duration_ms(self) -> float:
        """How long the span took."""
        return (self.end_ns - self.start_ns) / 1e6


def read_spans(folder: Path) -> list[SpanLine]:
    """Every span in the folder's ``*.jsonl`` files (a line still being written is skipped)."""
    spans: list[SpanLine] = []
    for path in sorted(folder.glob("*.jsonl")):
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                try:
                    raw = json.loads(line)
                    spans.append(
                        SpanLine(
                            trace_id=str(raw["trace_id"]),
                            span_id=str(raw["span_id"]),
                            parent_id=raw.get("parent_id"),
                            name=str(raw["name"]),
                            service=str(raw.get("service", "")),
                            start_ns=int(raw["start_ns"]),
                            end_ns=int(raw["end_ns"]),
                            status=str(raw.get("status", "UNSET")),
                            attributes=dict(raw.get("attributes") or {}),
                        )
                    )
                except (ValueError, KeyError, TypeError):
                    continue
    return spans


def find_trace(spans: list[SpanLine], request_id: str) -> list[SpanLine]:
    """The spans of the trace whose HTTP server span carries ``request_id`` (latest wins)."""
    tagged = [s for s in spans if s.attributes.get(REQUEST_ID_ATTRIBUTE) == request_id]
    if not tagged:
        return []
    trace_id = max(tagged, key=lambda s: s.start_ns).trace_id
    return [s for s in spans if s.trace_id == trace_id]


def render(spans: list[SpanLine]) -> list[str]:
    """The spans as a tree: start offset and duration in ms, service, indented span name."""
    if not spans:
        return []
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[SpanLine]] = defaultdict(list)
    for span in spans:
        # A parent that is not in the files (dropped, or still open) shows its child as a root.
        children[span.parent_id if span.parent_id in ids else None].append(span)
    origin = min(s.start_ns for s in spans)
    width = max(len(s.service) for s in spans)
    lines = [f"{'start ms':>10} {'duration ms':>12}  {'service':<{width}}  span"]

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: (s.start_ns, s.name)):
            failed = "  [error]" if span.status == "ERROR" else ""
            lines.append(
                f"{(span.start_ns - origin) / 1e6:>10.1f} {span.duration_ms:>12.1f}  "
                f"{span.service:<{width}}  {'  ' * depth}{span.name}{failed}"
            )
            walk(span.span_id, depth + 1)

    walk(None, 0)
    return lines
