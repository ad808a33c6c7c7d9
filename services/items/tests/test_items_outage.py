"""Dependencies that are down: 503 with Retry-After for Postgres and Redis; writes go on
without the broker (the outbox keeps them)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time

import pytest
from agora_deploy.infra import Infra
from agora_items.config import ItemsSettings
from agora_items.main import create_app
from agora_items.testing import ItemsHarness
from agora_kit.testing.app import app_client
from agora_kit.testing.poll import eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")

API = "/api/v1/items"


def _closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_database_and_redis_down_give_503_with_retry_after(items_svc: ItemsHarness) -> None:
    settings = items_svc.settings.model_copy(
        update={
            "database_url": f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/items",
            "redis_url": f"redis://127.0.0.1:{_closed_port()}/0",
            "consumer_enabled": False,
            "relay_enabled": False,
            "ensure_topics": False,
        }
    )
    async with app_client(create_app(settings)) as client:
        started = time.monotonic()
        responses = [
            await client.get(f"{API}/1"),
            await client.get(API),
            await client.post(
                API, json={"name": "x", "price": "1"}, headers=items_svc.auth(items_svc.new_user())
            ),
            await client.get("/health/ready"),
        ]
        assert time.monotonic() - started < 20
    for response in responses:
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"].isdigit()
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["status"] == 503


async def test_writes_succeed_while_the_broker_is_unreachable(items_svc: ItemsHarness) -> None:
    settings: ItemsSettings = items_svc.settings.model_copy(
        update={
            "kafka_bootstrap_servers": f"127.0.0.1:{_closed_port()}",
            "kafka_request_timeout_ms": 2000,
            "consumer_enabled": False,
        }
    )
    owner = items_svc.new_user()
    async with app_client(create_app(settings)) as client:
        response = await asyncio.wait_for(
            client.post(API, json={"name": "Offline", "price": "2"}, headers=items_svc.auth(owner)),
            timeout=10,
        )
        assert response.status_code == 201, response.text
    # Same database: the suite's relay (which holds the outbox lock) publishes the row.
    events = await items_svc.tap.wait_for_item(response.json()["id"], 1)
    assert events[0].data["owner_id"] == owner


async def test_frozen_redis_gives_503_within_two_seconds_and_recovers(
    items_svc: ItemsHarness, agora_infra: Infra
) -> None:
    pid = agora_infra.start_redis().pid
    if pid is None:
        pytest.skip("needs the embedded Redis (REDIS_URL points elsewhere)")
    settings = items_svc.settings.model_copy(
        update={"consumer_enabled": False, "relay_enabled": False, "ensure_topics": False}
    )
    owner = items_svc.new_user()
    async with app_client(create_app(settings)) as client:

        async def create(**headers: str) -> tuple[int, float, dict[str, str]]:
            started = time.monotonic()
            response = await asyncio.wait_for(
                client.post(
                    API,
                    json={"name": "Kettle", "price": "3"},
                    headers=items_svc.auth(owner, **headers),
                ),
                timeout=60,
            )
            return response.status_code, time.monotonic() - started, dict(response.headers)

        assert (await create())[0] == 201
        os.kill(pid, signal.SIGSTOP)
        try:
            # The token's revocation check, then an Idempotency-Key claim: both need Redis.
            for headers in ({}, {"Idempotency-Key": "frozen-1"}, {}):
                status, took, response_headers = await create(**headers)
                assert status == 503, status
                assert response_headers["retry-after"].isdigit()
                assert took < 2.5, f"503 after {took:.1f} s"
        finally:
            os.kill(pid, signal.SIGCONT)

        # Thawed: the pool drops the timed-out connections and the next requests work.
        async def recovered() -> bool:
            return (await create())[0] == 201

        await eventually(recovered, timeout_s=10)
