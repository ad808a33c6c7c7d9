"""Idempotency-Key on a real service app with the session's Redis and real signed tokens."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import pytest_asyncio
from agora_kit import errors
from agora_kit.app import create_service_app
from agora_kit.deps import OptionalUserDep
from agora_kit.settings import ServiceSettings
from agora_kit.testing.app import app_client
from agora_kit.testing.jwt import JwksServer, JwtKeyring
from fastapi import APIRouter, FastAPI, Response
from pydantic import BaseModel
from redis.asyncio import Redis

SERVICE = "kit-idem"


class Order(BaseModel):
    """An order to place."""

    item: str
    qty: int = 1


class Backend:
    """What the routes did, so tests can tell a replay from a re-execution."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()


def _router(backend: Backend) -> APIRouter:
    router = APIRouter()

    @router.post("/orders", status_code=201)
    async def place(order: Order, user: OptionalUserDep, response: Response) -> dict[str, object]:
        """Place an order (counts executions)."""
        backend.calls[order.item] += 1
        response.headers["Location"] = f"/api/v1/orders/{order.item}"
        return {
            "item": order.item,
            "execution": backend.calls[order.item],
            "owner": user.user_id if user else None,
        }

    @router.post("/flaky", status_code=201)
    async def flaky(order: Order) -> dict[str, int]:
        """Fail the first time per item: by raising or with a 503."""
        backend.calls[order.item] += 1
        if backend.calls[order.item] == 1:
            if order.qty == 0:
                raise RuntimeError("crashed mid-request")
            raise errors.ServiceUnavailable("mail is down")
        return {"execution": backend.calls[order.item]}

    @router.post("/slow", status_code=201)
    async def slow(order: Order) -> dict[str, int]:
        """Wait for the test to open the gate."""
        backend.calls[order.item] += 1
        backend.entered.set()
        await asyncio.wait_for(backend.gate.wait(), timeout=10)
        return {"execution": backend.calls[order.item]}

    @router.post("/auth/token")
    async def token(order: Order) -> dict[str, int]:
        """Stand-in for the token endpoint: never replayed."""
        backend.calls[order.item] += 1
        return {"execution": backend.calls[order.item]}

    return router


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def keyring() -> JwtKeyring:
    return JwtKeyring()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def jwks(keyring: JwtKeyring) -> AsyncIterator[JwksServer]:
    async with JwksServer(keyring) as server:
        yield server


@pytest.fixture(scope="module")
def backend() -> Backend:
    return Backend()


@pytest.fixture(scope="module")
def settings(
    create_database: Callable[[str], str], redis_url: str, jwks: JwksServer
) -> ServiceSettings:
    return ServiceSettings(
        service_name=SERVICE,
        database_url=create_database("kit_idem"),
        redis_url=redis_url,
        jwks_url=jwks.url,
    )


@pytest.fixture(scope="module")
def app(settings: ServiceSettings, backend: Backend) -> FastAPI:
    return create_service_app(settings, title="idem-test", version="0", routers=[_router(backend)])


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(app, client=("10.0.0.1", 40000)) as http:
        yield http


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, socket_timeout=5)
    try:
        yield client
    finally:
        await client.aclose()


def _key() -> str:
    return f"key-{uuid.uuid4().hex}"


def _item() -> str:
    return uuid.uuid4().hex


@pytest.mark.asyncio
async def test_same_key_and_body_replays_the_stored_response(
    client: httpx.AsyncClient, backend: Backend, redis: Redis
) -> None:
    key, item = _key(), _item()
    first = await client.post(
        "/api/v1/orders", json={"item": item}, headers={"Idempotency-Key": key}
    )
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    again = await client.post(
        "/api/v1/orders", json={"item": item}, headers={"Idempotency-Key": key}
    )
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json() == {"item": item, "execution": 1, "owner": None}
    assert again.headers["location"] == f"/api/v1/orders/{item}"
    assert again.headers["content-type"] == "application/json"
    assert again.headers["x-request-id"] != first.headers["x-request-id"]
    assert backend.calls[item] == 1
    stored = f"agora:idempotency:{SERVICE}:addr:10.0.0.1:{hashlib.sha256(key.encode()).hexdigest()}"
    assert 86_000 < await redis.ttl(stored) <= 86_400


@pytest.mark.asyncio
async def test_without_a_key_every_post_executes(
    client: httpx.AsyncClient, backend: Backend
) -> None:
    item = _item()
    for _ in range(2):
        assert (await client.post("/api/v1/orders", json={"item": item})).status_code == 201
    assert backend.calls[item] == 2


@pytest.mark.asyncio
async def test_same_key_other_body_is_422(client: httpx.AsyncClient, backend: Backend) -> None:
    key, item = _key(), _item()
    headers = {"Idempotency-Key": key}
    assert (
        await client.post("/api/v1/orders", json={"item": item}, headers=headers)
    ).status_code == 201
    other = await client.post("/api/v1/orders", json={"item": item, "qty": 2}, headers=headers)
    assert other.status_code == 422
    assert other.headers["content-type"] == "application/problem+json"
    assert "different request" in other.json()["detail"]
    assert backend.calls[item] == 1


@pytest.mark.asyncio
async def test_concurrent_duplicate_is_409(client: httpx.AsyncClient, backend: Backend) -> None:
    key, item = _key(), _item()
    headers = {"Idempotency-Key": key}
    backend.entered.clear()
    backend.gate.clear()
    first = asyncio.create_task(client.post("/api/v1/slow", json={"item": item}, headers=headers))
    try:
        await asyncio.wait_for(backend.entered.wait(), timeout=10)
        duplicate = await client.post("/api/v1/slow", json={"item": item}, headers=headers)
        assert duplicate.status_code == 409
        assert duplicate.headers["content-type"] == "application/problem+json"
        assert duplicate.headers["retry-after"] == "1"
    finally:
        backend.gate.set()
        done = await asyncio.wait_for(first, timeout=10)
    assert done.status_code == 201
    replay = await client.post("/api/v1/slow", json={"item": item}, headers=headers)
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == {"execution": 1}
    assert backend.calls[item] == 1


@pytest.mark.parametrize("how", ["raised", "503"])
@pytest.mark.asyncio
async def test_server_errors_are_not_stored(
    client: httpx.AsyncClient, backend: Backend, how: str
) -> None:
    key, item = _key(), _item()
    body = {"item": item, "qty": 0 if how == "raised" else 1}
    headers = {"Idempotency-Key": key}
    failed = await client.post("/api/v1/flaky", json=body, headers=headers)
    assert failed.status_code == (500 if how == "raised" else 503)
    retried = await client.post("/api/v1/flaky", json=body, headers=headers)
    assert retried.status_code == 201
    assert "idempotent-replayed" not in retried.headers
    assert retried.json() == {"execution": 2}
    replay = await client.post("/api/v1/flaky", json=body, headers=headers)
    assert replay.headers["idempotent-replayed"] == "true"
    assert backend.calls[item] == 2


@pytest.mark.asyncio
async def test_keys_are_scoped_per_caller(
    app: FastAPI, client: httpx.AsyncClient, backend: Backend, keyring: JwtKeyring
) -> None:
    key, item = _key(), _item()
    results = []
    for user_id in (101, 202):
        headers = {"Idempotency-Key": key, "Authorization": f"Bearer {keyring.token(user_id)}"}
        response = await client.post("/api/v1/orders", json={"item": item}, headers=headers)
        assert response.status_code == 201
        assert "idempotent-replayed" not in response.headers
        results.append(response.json())
    assert [r["owner"] for r in results] == [101, 202]
    # An anonymous caller from another address is a third, independent scope.
    transport = httpx.ASGITransport(app=app, client=("10.0.0.2", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as other:
        response = await other.post(
            "/api/v1/orders", json={"item": item}, headers={"Idempotency-Key": key}
        )
    assert "idempotent-replayed" not in response.headers
    assert backend.calls[item] == 3
    # The first user's retry (a fresh token, same user) replays that user's response.
    headers = {"Idempotency-Key": key, "Authorization": f"Bearer {keyring.token(101)}"}
    replay = await client.post("/api/v1/orders", json={"item": item}, headers=headers)
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["owner"] == 101
    assert backend.calls[item] == 3


@pytest.mark.asyncio
async def test_invalid_token_is_401_and_not_stored(
    client: httpx.AsyncClient, backend: Backend, keyring: JwtKeyring
) -> None:
    key, item = _key(), _item()
    expired = keyring.token(5, ttl_s=-120)
    headers = {"Idempotency-Key": key, "Authorization": f"Bearer {expired}"}
    for _ in range(2):
        response = await client.post("/api/v1/orders", json={"item": item}, headers=headers)
        assert response.status_code == 401
        assert "idempotent-replayed" not in response.headers
    assert backend.calls[item] == 0


@pytest.mark.asyncio
async def test_auth_paths_are_never_replayed(client: httpx.AsyncClient, backend: Backend) -> None:
    key, item = _key(), _item()
    for n in (1, 2):
        response = await client.post(
            "/api/v1/auth/token", json={"item": item}, headers={"Idempotency-Key": key}
        )
        assert response.json() == {"execution": n}
        assert "idempotent-replayed" not in response.headers


@pytest.mark.parametrize("bad", ["x" * 256, "with space", "ключ"])
@pytest.mark.asyncio
async def test_invalid_keys_are_400(client: httpx.AsyncClient, backend: Backend, bad: str) -> None:
    item = _item()
    response = await client.post(
        "/api/v1/orders",
        json={"item": item},
        headers={b"Idempotency-Key": bad.encode()},
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert backend.calls[item] == 0


@pytest.mark.asyncio
async def test_longest_key_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/orders", json={"item": _item()}, headers={"Idempotency-Key": "k" * 255}
    )
    assert response.status_code == 201


@pytest.mark.asyncio
async def test_redis_down_is_503(settings: ServiceSettings, backend: Backend) -> None:
    down = settings.model_copy(
        update={"redis_url": f"redis://127.0.0.1:{_closed_port()}/0", "redis_retries": 0}
    )
    app = create_service_app(down, title="idem-down", version="0", routers=[_router(backend)])
    item = _item()
    async with app_client(app) as http:
        response = await http.post(
            "/api/v1/orders", json={"item": item}, headers={"Idempotency-Key": _key()}
        )
    assert response.status_code == 503
    assert response.headers["retry-after"] == str(settings.retry_after_s)
    assert response.headers["content-type"] == "application/problem+json"
    assert backend.calls[item] == 0


@pytest.mark.asyncio
async def test_a_long_request_keeps_its_claim_and_a_crashed_one_lapses(
    settings: ServiceSettings, redis: Redis
) -> None:
    """The claim outlives its 1 s TTL while the request runs; an orphaned claim lapses."""
    backend = Backend()
    short = settings.model_copy(update={"idempotency_lock_ttl_s": 1})
    app = create_service_app(short, title="idem-ttl", version="0", routers=[_router(backend)])
    async with app_client(app, client=("10.0.0.2", 40000)) as client:
        key, item = _key(), _item()
        headers = {"Idempotency-Key": key}
        first = asyncio.create_task(
            client.post("/api/v1/slow", json={"item": item}, headers=headers)
        )
        try:
            await asyncio.wait_for(backend.entered.wait(), timeout=10)
            await asyncio.sleep(2.5)  # longer than the lock TTL: only the keep-alive holds it
            duplicate = await client.post("/api/v1/slow", json={"item": item}, headers=headers)
            assert duplicate.status_code == 409
        finally:
            backend.gate.set()
            done = await asyncio.wait_for(first, timeout=10)
        assert done.status_code == 201
        assert backend.calls[item] == 1
        # A worker that died mid-request leaves its marker; it lapses after the TTL.
        orphan_key, orphan_item = _key(), _item()
        caller = "addr:10.0.0.2"
        digest = hashlib.sha256(orphan_key.encode()).hexdigest()
        orphan = f"agora:idempotency:{SERVICE}:{caller}:{digest}"
        marker = '{"state": "processing", "fp": "x", "id": "dead"}'
        await redis.set(orphan, marker, ex=short.idempotency_lock_ttl_s)
        blocked = await client.post(
            "/api/v1/orders", json={"item": orphan_item}, headers={"Idempotency-Key": orphan_key}
        )
        assert blocked.status_code in (409, 422)
        await asyncio.sleep(short.idempotency_lock_ttl_s + 0.5)
        retried = await client.post(
            "/api/v1/orders", json={"item": orphan_item}, headers={"Idempotency-Key": orphan_key}
        )
        assert retried.status_code == 201
        assert backend.calls[orphan_item] == 1
