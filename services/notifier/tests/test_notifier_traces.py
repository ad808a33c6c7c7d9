"""One trace from an HTTP request to the SMTP send, through the outbox, relay and consumer.

Runs in one process against the suite's real Postgres, broker and mail sink: a small request
app writes an event through the unit of work into the notifier's own outbox, the running
notifier's relay publishes it, its consumer handles it and sends the welcome email. Spans go
to an in-memory exporter.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from agora_contract import UserRegistered
from agora_kit import tracing
from agora_kit.app import create_service_app
from agora_kit.testing.app import app_client
from agora_kit.testing.mail import MailApi
from agora_kit.uow import UnitOfWork
from agora_notifier import models
from agora_notifier.config import NotifierSettings
from fastapi import APIRouter, FastAPI, Request
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind


def _request_app(settings: NotifierSettings, email: str) -> FastAPI:
    """An app whose one route registers a user through the unit of work (the users' way)."""

    # The suite's consumer reads its own users topic, not the real one.
    class SuiteRegistered(UserRegistered):
        topic = settings.users_topic

    router = APIRouter()

    @router.post("/registrations", status_code=201)
    async def register(request: Request) -> dict[str, str]:
        ctx = request.app.state.ctx
        async with UnitOfWork(ctx.session_factory, outbox=models.outbox) as uow:
            user_id = (uuid.uuid4().int % (2**62)) + 1
            event = SuiteRegistered(
                user_id=user_id, email=email, name="Traced", registered_at=datetime.now(UTC)
            )
            envelope = uow.add_event(event)
            await uow.commit()
        return {"event_id": str(envelope.id)}

    return create_service_app(settings, title="traced", version="0", routers=[router])


def _attrs(span: ReadableSpan) -> Mapping[str, Any]:
    return span.attributes or {}


def _one(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


def _child(spans: Sequence[ReadableSpan], name: str, parent: ReadableSpan) -> ReadableSpan:
    found = [s for s in spans if s.name == name and _is_child(s, parent)]
    assert len(found) == 1, (name, parent.name, [s.name for s in spans])
    return found[0]


def _is_child(child: ReadableSpan, parent: ReadableSpan) -> bool:
    parent_ctx = parent.get_span_context()
    if child.parent is None:
        return False
    assert parent_ctx is not None
    return child.parent.span_id == parent_ctx.span_id


@pytest.mark.asyncio(loop_scope="session")
async def test_request_to_smtp_send_is_one_trace(
    notifier_app: FastAPI, notifier_settings: NotifierSettings, notifier_mail: MailApi
) -> None:
    exporter = InMemorySpanExporter()
    email = f"traced-{uuid.uuid4().hex[:12]}@example.test"
    request_id = f"trace-{uuid.uuid4().hex}"
    with tracing.enabled_for_tests(exporter):
        async with app_client(_request_app(notifier_settings, email)) as client:
            response = await client.post(
                "/api/v1/registrations", headers={"X-Request-ID": request_id}
            )
            assert response.status_code == 201, response.text
        await notifier_mail.wait_for(email, timeout_s=60)

        # The SMTP span ends right after the sink's 250; poll for it with a deadline.
        def traced() -> list[ReadableSpan]:
            spans = list(exporter.get_finished_spans())
            roots = [s for s in spans if _attrs(s).get(tracing.REQUEST_ID_ATTRIBUTE)]
            if len(roots) != 1:
                return []
            trace_id = roots[0].context.trace_id
            return [s for s in spans if s.context.trace_id == trace_id]

        deadline = asyncio.get_running_loop().time() + 30
        while not any(s.name == "smtp send" for s in traced()):
            assert asyncio.get_running_loop().time() < deadline, [
                s.name for s in exporter.get_finished_spans()
            ]
            await asyncio.sleep(0.1)
        spans = traced()

    server = _one(spans, "POST /api/v1/registrations")
    assert server.kind is SpanKind.SERVER
    assert server.parent is None
    assert _attrs(server)[tracing.REQUEST_ID_ATTRIBUTE] == request_id
    enqueue = _child(spans, "outbox enqueue", server)
    publish = _child(spans, "relay publish", enqueue)
    send = _child(spans, f"{notifier_settings.users_topic} send", publish)  # aiokafka's span
    handle = _child(spans, "consumer handle", send)
    smtp = _child(spans, "smtp send", handle)
    # The notifier's own outcome event (NotificationSent) joins the trace too.
    assert any(s.name == "outbox enqueue" and _is_child(s, handle) for s in spans)
    assert publish.kind is SpanKind.PRODUCER
    assert handle.kind is SpanKind.CONSUMER
    assert _attrs(enqueue)["agora.event_type"] == _attrs(handle)["agora.event_type"]
    assert str(_attrs(smtp)["smtp.reply"]).startswith("2")
    # SQLAlchemy's instrumentation joined the request's trace: its INSERT into the outbox.
    # (The suite's notifier app was built before tracing was on, so its engine is not traced.)
    statements = [s for s in spans if _attrs(s).get("db.system") == "postgresql"]
    assert any(_is_child(s, server) for s in statements), [s.name for s in statements]
    assert not tracing.ENABLED
