"""Liveness, readiness against real and unreachable dependencies, metrics and docs routes."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass

import httpx
import pytest
import pytest_asyncio
from agora_contract import asyncapi_document
from agora_kit.app import create_service_app
from agora_kit.health import ReadyCheck
from agora_kit.lifecycle import Component
from agora_kit.runtime import AnyContext, Platform
from agora_kit.settings import ServiceSettings
from agora_kit.testing.app import app_client
from fastapi import APIRouter, FastAPI
from prometheus_client import Counter


class FakeComponent:
    """A background task that can be told to look wedged."""

    def __init__(self, name: str, events: list[str]) -> None:
        self.name = name
        self.events = events
        self.wedged = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        self.events.append(f"start {self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout=5)
        self.events.append(f"stop {self.name}")

    async def _run(self) -> None:
        await asyncio.Event().wait()

    def is_alive(self) -> bool:
        return not self.wedged and self._task is not None and not self._task.done()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (kernel backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def _router() -> APIRouter:
    router = APIRouter()

    @router.get("/ping")
    async def ping() -> dict[str, str]:
        """Answer."""
        return {"pong": "yes"}

    return router


@dataclass(frozen=True, slots=True)
class JobsRuntime:
    """A service runtime with one metric of its own and two background components."""

    jobs: Counter
    components: tuple[Component, ...]


def _app(
    settings: ServiceSettings,
    events: list[str] | None = None,
    ready_checks: Sequence[ReadyCheck] = (),
) -> FastAPI:
    def bootstrap(platform: Platform[ServiceSettings]) -> JobsRuntime:
        log = events if events is not None else []
        return JobsRuntime(
            jobs=Counter("jobs_done_total", "Jobs done.", registry=platform.registry),
            components=(FakeComponent("relay", log), FakeComponent("consumer", log)),
        )

    return create_service_app(
        settings,
        title="health-test",
        version="1.2.3",
        routers=[_router()],
        bootstrap=bootstrap,
        ready_checks=ready_checks,
    )


@pytest.fixture(scope="module")
def database_url(create_database: Callable[[str], str]) -> str:
    return create_database("kit_health")


def _settings(db_url: str, cache_url: str, **overrides: object) -> ServiceSettings:
    return ServiceSettings.model_validate(
        {
            "service_name": "kit-health",
            "database_url": db_url,
            "redis_url": cache_url,
            "retry_after_s": 9,
            "health_timeout_s": 1.0,
            "db_connect_timeout_s": 1.0,
            "redis_retries": 0,
            **overrides,
        }
    )


@pytest.fixture(scope="module")
def app(database_url: str, redis_url: str) -> FastAPI:
    return _app(_settings(database_url, redis_url))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(app) as http:
        yield http


@pytest.mark.asyncio
async def test_ready_when_database_and_redis_answer(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}


@pytest.mark.asyncio
async def test_live_lists_components(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "alive", "components": ["relay", "consumer"]}


@pytest.mark.asyncio
async def test_live_is_503_when_a_component_is_wedged(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    consumer = app.state.ctx.components[1]
    consumer.wedged = True
    try:
        response = await client.get("/health/live")
    finally:
        consumer.wedged = False
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["components"] == {"relay": True, "consumer": False}
    assert "consumer" in body["detail"]
    assert (await client.get("/health/live")).status_code == 200


@pytest.mark.parametrize("broken", ["database", "redis"])
@pytest.mark.asyncio
async def test_ready_is_503_when_a_dependency_is_unreachable(
    database_url: str, redis_url: str, broken: str
) -> None:
    closed = _closed_port()
    overrides = (
        {"database_url": f"postgresql+asyncpg://postgres@127.0.0.1:{closed}/x"}
        if broken == "database"
        else {"redis_url": f"redis://127.0.0.1:{closed}/0"}
    )
    settings = _settings(database_url, redis_url, **overrides)
    async with app_client(_app(settings)) as http:
        response = await http.get("/health/ready")
        # Liveness does not depend on the database or Redis.
        assert (await http.get("/health/live")).status_code == 200
    assert response.status_code == 503
    assert response.headers["retry-after"] == "9"
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 503
    assert broken in body["detail"]
    healthy = "redis" if broken == "database" else "database"
    assert body["checks"][healthy] == "ok"
    assert body["checks"][broken] != "ok"
    assert str(closed) not in response.text  # no connection strings in the body


@pytest.mark.asyncio
async def test_ready_times_out_on_a_silent_redis(
    database_url: str, redis_url: str, silent_port: int
) -> None:
    settings = _settings(
        database_url,
        redis_url,
        redis_url=f"redis://127.0.0.1:{silent_port}/0",
        health_timeout_s=0.5,
    )
    async with app_client(_app(settings)) as http:
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await http.get("/health/ready")
        elapsed = loop.time() - started
    assert response.status_code == 503
    assert response.json()["checks"]["redis"].startswith("timed out")
    assert elapsed < 3


@pytest.mark.asyncio
async def test_extra_ready_check_failure_is_named(database_url: str, redis_url: str) -> None:
    async def broker(_ctx: AnyContext) -> None:
        raise ConnectionRefusedError("no broker")

    settings = _settings(database_url, redis_url)
    async with app_client(_app(settings, ready_checks=[ReadyCheck("search", broker)])) as http:
        response = await http.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"] == {
        "database": "ok",
        "redis": "ok",
        "search": "ConnectionRefusedError",
    }


@pytest.mark.asyncio
async def test_components_start_in_order_and_stop_in_reverse(
    database_url: str, redis_url: str
) -> None:
    events: list[str] = []
    async with app_client(_app(_settings(database_url, redis_url), events)) as http:
        assert (await http.get("/health/live")).status_code == 200
        assert events == ["start relay", "start consumer"]
    assert events == ["start relay", "start consumer", "stop consumer", "stop relay"]


@pytest.mark.asyncio
async def test_metrics_serve_the_app_registry(app: FastAPI, client: httpx.AsyncClient) -> None:
    await client.get("/api/v1/ping")
    app.state.ctx.runtime.jobs.inc(3)
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'http_requests_total{method="GET",route="/api/v1/ping",status="200"}' in text, text[
        :2000
    ]
    assert "http_request_duration_seconds_bucket" in text
    assert "jobs_done_total 3.0" in text
    assert "process_cpu_seconds_total" in text or "python_info" in text


@pytest.mark.asyncio
async def test_unmatched_paths_share_one_metrics_label(client: httpx.AsyncClient) -> None:
    for n in range(3):
        await client.get(f"/scan/{n}")
    text = (await client.get("/metrics")).text
    assert 'route="<unmatched>",status="404"' in text
    assert "/scan/1" not in text


@pytest.mark.asyncio
async def test_docs_openapi_and_asyncapi(client: httpx.AsyncClient) -> None:
    for path in ("/docs", "/redoc"):
        assert (await client.get(path)).status_code == 200
    openapi = (await client.get("/openapi.json")).json()
    assert openapi["info"] == {"title": "health-test", "version": "1.2.3"}
    assert "/api/v1/ping" in openapi["paths"]
    assert "/health/ready" not in openapi["paths"]
    asyncapi = await client.get("/asyncapi.json")
    assert asyncapi.status_code == 200
    assert asyncapi.json() == asyncapi_document()
    assert asyncapi.json()["asyncapi"].startswith("3.")
