"""App factory wiring: settings refuse weak secrets, CORS, body limit, failed startup cleanup."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from agora_kit.app import create_service_app
from agora_kit.runtime import NoRuntime, Platform
from agora_kit.settings import Environment, ServiceSettings
from agora_kit.testing.app import app_client
from fastapi import APIRouter, Request
from pydantic import SecretStr, ValidationError


class SigningSettings(ServiceSettings):
    """A service's settings with a secret."""

    signing_secret: SecretStr = SecretStr("changeme")


@pytest.mark.parametrize("env", [Environment.PRODUCTION, Environment.TEST])
def test_weak_secrets_are_refused_outside_development(env: Environment) -> None:
    with pytest.raises(ValidationError, match="signing_secret"):
        SigningSettings(env=env)
    with pytest.raises(ValidationError, match="signing_secret"):
        SigningSettings(env=env, signing_secret=SecretStr("short-but-real"))
    strong = SigningSettings(env=env, signing_secret=SecretStr("a-long-random-secret-value-42"))
    assert strong.signing_secret.get_secret_value().startswith("a-long")


def test_development_accepts_the_default_secret() -> None:
    assert SigningSettings(env=Environment.DEVELOPMENT).signing_secret.get_secret_value()


def test_process_time_setting() -> None:
    # Opt-in everywhere (docs/security.md, Account enumeration): development stacks are
    # reachable too.
    assert not ServiceSettings(env=Environment.DEVELOPMENT).show_process_time
    assert not ServiceSettings(env=Environment.PRODUCTION).show_process_time
    assert ServiceSettings(env=Environment.PRODUCTION, process_time_header=True).show_process_time


def _router() -> APIRouter:
    router = APIRouter()

    @router.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        """Return the body size."""
        return {"size": len(await request.body())}

    return router


@pytest.fixture(scope="module")
def settings(create_database: Callable[[str], str], redis_url: str) -> ServiceSettings:
    return ServiceSettings(
        service_name="kit-app",
        database_url=create_database("kit_app"),
        redis_url=redis_url,
        cors_origins=["https://app.example"],
        max_body_bytes=2048,
    )


@pytest.mark.asyncio
async def test_cors_allow_list(settings: ServiceSettings) -> None:
    app = create_service_app(settings, title="app-test", version="0", routers=[_router()])
    async with app_client(app) as http:
        preflight = await http.options(
            "/api/v1/echo",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "Authorization, Idempotency-Key",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        denied = await http.options(
            "/api/v1/echo",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in denied.headers
        simple = await http.post(
            "/api/v1/echo", content=b"{}", headers={"Origin": "https://app.example"}
        )
        assert simple.headers["access-control-allow-origin"] == "https://app.example"
        assert "X-Request-ID" in simple.headers["access-control-expose-headers"]


@pytest.mark.asyncio
async def test_oversized_body_is_413_problem(settings: ServiceSettings) -> None:
    app = create_service_app(settings, title="app-test", version="0", routers=[_router()])
    async with app_client(app) as http:
        ok = await http.post("/api/v1/echo", content=b"x" * 2000)
        assert ok.json() == {"size": 2000}
        for headers in ({}, {"Idempotency-Key": "big-1"}):

            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(4):
                    yield b"y" * 1024

            too_big = await http.post("/api/v1/echo", content=chunks(), headers=headers)
            assert too_big.status_code == 413
            assert too_big.headers["content-type"] == "application/problem+json"
            assert too_big.json()["request_id"] == too_big.headers["x-request-id"]


class Recorder:
    """A component that records its lifecycle; optionally fails to start."""

    def __init__(self, name: str, events: list[str], *, fail: bool = False) -> None:
        self.name = name
        self.events = events
        self.fail = fail

    async def start(self) -> None:
        if self.fail:
            raise RuntimeError(f"{self.name} cannot start")
        self.events.append(f"start {self.name}")

    async def stop(self) -> None:
        self.events.append(f"stop {self.name}")

    def is_alive(self) -> bool:
        return True


@pytest.mark.asyncio
async def test_failed_startup_stops_what_started(settings: ServiceSettings) -> None:
    events: list[str] = []

    def bootstrap(_platform: Platform[ServiceSettings]) -> NoRuntime:
        return NoRuntime(
            components=(Recorder("relay", events), Recorder("consumer", events, fail=True))
        )

    app = create_service_app(settings, title="app-test", version="0", bootstrap=bootstrap)
    with pytest.raises(RuntimeError, match="consumer cannot start"):
        async with app_client(app):
            pass
    assert events == ["start relay", "stop relay"]


def test_a_service_version_comes_from_its_installed_distribution() -> None:
    from importlib.metadata import version

    from agora_kit.version import package_version

    assert package_version("agora-kit") == version("agora-kit")
    assert package_version("agora-no-such-service") == "0.0.0"
