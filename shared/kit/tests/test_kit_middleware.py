"""Request id, trace parent, process time and the JSON access log on a real service app."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import pytest_asyncio
from agora_kit.app import create_service_app
from agora_kit.context import request_id_var, traceparent_var
from agora_kit.logging import configure_logging
from agora_kit.middleware import sane_request_id, valid_traceparent
from agora_kit.settings import Environment, ServiceSettings
from agora_kit.testing.app import app_client
from fastapi import APIRouter, FastAPI

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _router() -> APIRouter:
    router = APIRouter()

    @router.get("/context")
    async def context() -> dict[str, str | None]:
        """Return what the request context variables hold inside the route."""
        logging.getLogger("agora.test").info("inside the route")
        return {"request_id": request_id_var.get(), "traceparent": traceparent_var.get()}

    @router.get("/sync-context")
    def sync_context() -> dict[str, str | None]:
        """Return the request id from a threadpool route."""
        return {"request_id": request_id_var.get()}

    return router


def _app(settings: ServiceSettings) -> FastAPI:
    return create_service_app(settings, title="mw-test", version="0", routers=[_router()])


@pytest.fixture(scope="module")
def database_url(create_database: Callable[[str], str]) -> str:
    return create_database("kit_mw")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(database_url: str, redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = ServiceSettings(
        service_name="kit-mw", database_url=database_url, redis_url=redis_url
    )
    async with app_client(_app(settings)) as http:
        yield http


@pytest.mark.asyncio
async def test_request_id_is_generated_and_reaches_the_route(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/context")
    request_id = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert response.json() == {"request_id": request_id, "traceparent": None}
    other = await client.get("/api/v1/context")
    assert other.headers["x-request-id"] != request_id
    assert request_id_var.get() is None  # reset after the request


@pytest.mark.asyncio
async def test_sane_request_id_is_echoed_and_propagated(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/context", headers={"X-Request-ID": "gw-1.2:3_a-b"})
    assert response.headers["x-request-id"] == "gw-1.2:3_a-b"
    assert response.json()["request_id"] == "gw-1.2:3_a-b"
    threaded = await client.get("/api/v1/sync-context", headers={"X-Request-ID": "thread-7"})
    assert threaded.json() == {"request_id": "thread-7"}


@pytest.mark.parametrize("bad", ["a" * 129, "with space", "new\\nline", "<script>", ""])
@pytest.mark.asyncio
async def test_insane_request_id_is_replaced(client: httpx.AsyncClient, bad: str) -> None:
    response = await client.get("/api/v1/context", headers={"X-Request-ID": bad})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    assert response.json()["request_id"] == response.headers["x-request-id"]


@pytest.mark.asyncio
async def test_request_id_is_on_error_responses(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/missing", headers={"X-Request-ID": "err-1"})
    assert response.status_code == 404
    assert response.headers["x-request-id"] == "err-1"
    assert response.json()["request_id"] == "err-1"


@pytest.mark.asyncio
async def test_traceparent_reaches_the_context(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/context", headers={"traceparent": TRACEPARENT})
    assert response.json()["traceparent"] == TRACEPARENT
    bad = await client.get("/api/v1/context", headers={"traceparent": "00-zz-yy-01"})
    assert bad.json()["traceparent"] is None


def test_validators() -> None:
    assert sane_request_id("abc") == "abc"
    assert sane_request_id("a" * 128) == "a" * 128
    assert sane_request_id("a" * 129) is None
    assert sane_request_id(None) is None
    assert valid_traceparent(TRACEPARENT) == TRACEPARENT
    assert valid_traceparent("00-" + "0" * 32 + "-00f067aa0ba902b7-01") is None
    assert valid_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") is None


@pytest.mark.asyncio
async def test_access_log_line_per_request(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="agora.access"):
        await client.get("/api/v1/context", headers={"X-Request-ID": "log-me"})
    lines = [r.msg for r in caplog.records if r.name == "agora.access"]
    assert len(lines) == 1
    line = lines[0]
    assert isinstance(line, dict)
    assert line["method"] == "GET"
    assert line["path"] == "/api/v1/context"
    assert line["route"] == "/api/v1/context"
    assert line["status"] == 200
    assert line["request_id"] == "log-me"
    assert line["duration_ms"] >= 0


@pytest.mark.asyncio
async def test_process_time_header_is_opt_in(
    client: httpx.AsyncClient, database_url: str, redis_url: str
) -> None:
    # The default, in development too: no timing channel (docs/security.md, Account enumeration).
    response = await client.get("/api/v1/context")
    assert response.status_code == 200
    assert "x-process-time" not in response.headers
    assert "x-request-id" in response.headers
    opted_in = ServiceSettings(
        service_name="kit-mw-timing",
        env=Environment.PRODUCTION,
        database_url=database_url,
        redis_url=redis_url,
        process_time_header=True,
    )
    async with app_client(_app(opted_in)) as timed:
        response = await timed.get("/api/v1/context")
        assert float(response.headers["x-process-time"]) >= 0


def test_configure_logging_is_idempotent_and_writes_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = ServiceSettings(service_name="kit-log")
    configure_logging(settings)
    configure_logging(settings)
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "_agora_handler", False)]
    assert len(ours) == 1
    token = request_id_var.set("json-log-1")
    try:
        logging.getLogger("agora.test").warning("hello %s", "world")
    finally:
        request_id_var.reset(token)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    record = next(line for line in lines if line.get("logger") == "agora.test")
    assert record["event"] == "hello world"
    assert record["request_id"] == "json-log-1"
    assert record["level"] == "warning"
