"""`agora trace` reads spans from every process's file and joins them into one tree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agora_deploy.traces import find_trace, read_spans, render
from agora_deploy.up import UpOptions

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
OTHER = "0" * 31 + "1"
RID_1 = {"agora.request_id": "rid-1"}
RID_2 = {"agora.request_id": "rid-2"}
RID_1 = {"agora.request_id": "rid-1"}
RID_2 = {"agora.request_id": "rid-2"}


def _span(span_id: str, parent: str | None, name: str, service: str, start: int, end: int,
          trace: str = TRACE, **attributes: Any) -> dict[str, Any]:  # fmt: skip
    return {
        "trace_id": trace, "span_id": span_id, "parent_id": parent, "name": name,
        "service": service, "kind": "INTERNAL", "start_ns": start * 1_000_000,
        "end_ns": end * 1_000_000, "status": "UNSET", "attributes": attributes,
    }  # fmt: skip


def _write(path: Path, spans: list[dict[str, Any]], tail: str = "") -> None:
    path.write_text("".join(json.dumps(s) + "\n" for s in spans) + tail)


def test_spans_of_two_processes_join_into_one_tree(tmp_path: Path) -> None:
    _write(
        tmp_path / "items-1.jsonl",
        [
            _span("b" * 16, "a" * 16, "outbox enqueue", "items", 110, 130),
            _span("a" * 16, None, "POST /api/v1/items", "items", 100, 150, **RID_1),
            _span("f" * 16, None, "POST /api/v1/items", "items", 200, 210, OTHER, **RID_2),
        ],
    )
    # Another process; its last line is still being written.
    _write(
        tmp_path / "notifier-2.jsonl",
        [
            _span("c" * 16, "b" * 16, "consumer handle", "notifier", 160, 190),
            _span("d" * 16, "c" * 16, "smtp send", "notifier", 170, 185),
        ],
        tail='{"trace_id": "4bf9',
    )
    spans = find_trace(read_spans(tmp_path), "rid-1")
    assert {s.name for s in spans} == {
        "POST /api/v1/items", "outbox enqueue", "consumer handle", "smtp send",
    }  # fmt: skip
    lines = render(spans)
    assert lines == [
        "  start ms  duration ms  service   span",
        "       0.0         50.0  items     POST /api/v1/items",
        "      10.0         20.0  items       outbox enqueue",
        "      60.0         30.0  notifier      consumer handle",
        "      70.0         15.0  notifier        smtp send",
    ]
    assert find_trace(read_spans(tmp_path), "rid-3") == []


def test_up_options_carry_trace_to_the_detached_supervisor() -> None:
    options = UpOptions(gateway_port=9999, trace=True)
    assert UpOptions.from_json(options.to_json()) == options
    assert not UpOptions.from_json(UpOptions().to_json()).trace
