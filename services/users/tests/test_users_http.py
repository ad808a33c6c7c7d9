"""HTTP conventions of the service: docs, health, idempotency, and dependencies that are down."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import sqlalchemy as sa
from agora_users.config import UsersSettings
from agora_users.main import create_app
from agora_users.models import User
from agora_users.testing import PASSWORD, ClientFactory, login, new_email
from fastapi import FastAPI

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_docs_schema_health_and_metrics_are_served(users_client: ClientFactory) -> None:
    client = users_client()
    for path in ("/docs", "/redoc"):
        response = await client.get(path)
        assert response.status_code == 200
        assert "text/html" in response.headers["content-type"]
    schema = (await client.get("/openapi.json")).json()
    for path in (
        "/api/v1/users",
        "/api/v1/users/me",
        "/api/v1/users/me/email",
        "/api/v1/users/me/password",
        "/api/v1/users/{user_id}",
        "/api/v1/auth/token",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/auth/verify-email",
        "/api/v1/auth/password-reset",
        "/api/v1/auth/password-reset/confirm",
        "/.well-known/jwks.json",
    ):
        assert path in schema["paths"], path
    assert (await client.get("/asyncapi.json")).json()["asyncapi"].startswith("3.")
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}
    live = await client.get("/health/live")
    assert live.status_code == 200
    assert {"key-reloader", "topic-bootstrap"} <= set(live.json()["components"])
    jwks = await client.get("/.well-known/jwks.json")
    assert jwks.headers["content-type"].startswith("application/jwk-set+json")
    assert all("d" not in key for key in jwks.json()["keys"])  # public halves only
    metrics = await client.get("/metrics")
    assert "agora_outbox_backlog" in metrics.text


async def test_idempotency_key_replays_a_registration(users_client: ClientFactory) -> None:
    client = users_client()
    payload = {"email": new_email(), "name": "Once", "password": PASSWORD}
    headers = {"Idempotency-Key": new_email()}
    first = await client.post("/api/v1/users", json=payload, headers=headers)
    second = await client.post("/api/v1/users", json=payload, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers.get("idempotent-replayed") == "true"
    other = await client.post("/api/v1/users", json={**payload, "name": "Twice"}, headers=headers)
    assert other.status_code == 422


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest_asyncio.fixture(loop_scope="session")
async def users_down_client(
    users_settings: UsersSettings, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose database and Redis are unreachable (nothing listens on their ports)."""
    settings = users_settings.model_copy(
        update={
            "database_url": f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/users",
            "redis_url": f"redis://127.0.0.1:{_closed_port()}/0",
            "keys_dir": tmp_path / "keys",
            "redis_retries": 1,
        }
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("10.250.0.1", 40000))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://users.test", timeout=30
        ) as client:
            yield client


async def test_dependencies_down_give_503_with_retry_after(
    users_down_client: httpx.AsyncClient,
) -> None:
    client = users_down_client
    register = await client.post(
        "/api/v1/users", json={"email": new_email(), "name": "Down", "password": PASSWORD}
    )
    login = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": new_email(), "password": PASSWORD},
    )
    ready = await client.get("/health/ready")
    for response in (register, login, ready):
        assert response.status_code == 503, response.text
        assert int(response.headers["retry-after"]) >= 1
        assert response.headers["content-type"].startswith("application/problem+json")
    assert "Traceback" not in register.text
    assert (await client.get("/health/live")).status_code == 200


async def test_passwords_and_hashes_stay_out_of_logs_and_errors(
    users_client: ClientFactory, users_app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = users_client()
    secret = f"pw-{new_email()}"
    payload = {"email": new_email(), "name": "Quiet", "password": secret}
    assert (await client.post("/api/v1/users", json=payload)).status_code == 201
    assert (await client.post("/api/v1/users", json=payload)).status_code == 409
    assert (await login(client, payload["email"], secret)).status_code == 200
    assert (await login(client, payload["email"], secret + "x")).status_code == 400
    short = await client.post("/api/v1/users", json={**payload, "password": "tiny"})
    assert short.status_code == 422
    assert caplog.records, "the requests were logged"
    assert secret not in caplog.text
    assert "$argon2" not in caplog.text

    # A failing statement's error text carries no bound parameters (e.g. a hash).
    engine = users_app.state.ctx.engine
    with pytest.raises(sa.exc.IntegrityError) as failed:
        async with engine.begin() as conn:
            await conn.execute(
                sa.insert(User).values(email="UPPER@EXAMPLE.COM", name="x", hashed_password=secret)
            )
    assert secret not in str(failed.value)
