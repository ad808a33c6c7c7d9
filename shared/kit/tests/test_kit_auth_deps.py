"""The auth dependencies on a real service app: 401 problems, admin 403, JWKS down 503."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import pytest_asyncio
from agora_kit.app import create_service_app
from agora_kit.deps import AdminDep, CurrentUserDep, OptionalUserDep
from agora_kit.settings import ServiceSettings
from agora_kit.testing.app import app_client
from agora_kit.testing.jwt import JwksServer, JwtKeyring
from fastapi import APIRouter, FastAPI


def _router() -> APIRouter:
    router = APIRouter()

    @router.get("/me")
    async def me(user: CurrentUserDep) -> dict[str, object]:
        """Return the caller."""
        return {"id": user.user_id, "roles": sorted(user.roles), "verified": user.email_verified}

    @router.get("/maybe")
    async def maybe(user: OptionalUserDep) -> dict[str, int | None]:
        """Return the caller if any."""
        return {"id": user.user_id if user else None}

    @router.get("/admin")
    async def admin(user: AdminDep) -> dict[str, int]:
        """Admins only."""
        return {"id": user.user_id}

    return router


def _app(settings: ServiceSettings) -> FastAPI:
    return create_service_app(settings, title="auth-test", version="0", routers=[_router()])


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def keyring() -> JwtKeyring:
    return JwtKeyring()


@pytest.fixture(scope="module")
def database_url(create_database: Callable[[str], str]) -> str:
    return create_database("kit_authdeps")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(
    keyring: JwtKeyring, database_url: str, redis_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with JwksServer(keyring) as jwks:
        settings = ServiceSettings(
            service_name="kit-authdeps",
            database_url=database_url,
            redis_url=redis_url,
            jwks_url=jwks.url,
        )
        async with app_client(_app(settings)) as http:
            yield http


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.asyncio
async def test_valid_token_reaches_the_route(
    client: httpx.AsyncClient, keyring: JwtKeyring
) -> None:
    response = await client.get("/api/v1/me", headers=_bearer(keyring.token(12, roles=["reader"])))
    assert response.status_code == 200
    assert response.json() == {"id": 12, "roles": ["reader"], "verified": True}


@pytest.mark.asyncio
async def test_missing_token_is_401_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "https://agora.dev/problems/unauthorized"


@pytest.mark.parametrize(
    "authorization", ["Basic dXNlcjpwdw==", "Bearer", "Bearer not.a.jwt", "Bearer a.b.c"]
)
@pytest.mark.asyncio
async def test_bad_credentials_are_401_invalid(
    client: httpx.AsyncClient, authorization: str
) -> None:
    response = await client.get("/api/v1/me", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_')
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.asyncio
async def test_expired_token_is_401_invalid_token(
    client: httpx.AsyncClient, keyring: JwtKeyring
) -> None:
    response = await client.get("/api/v1/me", headers=_bearer(keyring.token(1, ttl_s=-60)))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert "expired" in response.json()["detail"]


@pytest.mark.asyncio
async def test_optional_user(client: httpx.AsyncClient, keyring: JwtKeyring) -> None:
    assert (await client.get("/api/v1/maybe")).json() == {"id": None}
    assert (await client.get("/api/v1/maybe", headers=_bearer(keyring.token(8)))).json() == {
        "id": 8
    }
    # A token that is sent must be valid, even where a token is optional.
    bad = await client.get("/api/v1/maybe", headers=_bearer(keyring.token(8, ttl_s=-60)))
    assert bad.status_code == 401


@pytest.mark.asyncio
async def test_admin_dependency(client: httpx.AsyncClient, keyring: JwtKeyring) -> None:
    forbidden = await client.get("/api/v1/admin", headers=_bearer(keyring.token(3)))
    assert forbidden.status_code == 403
    assert forbidden.headers["content-type"] == "application/problem+json"
    assert forbidden.json()["type"] == "https://agora.dev/problems/forbidden"
    admin = await client.get("/api/v1/admin", headers=_bearer(keyring.token(4, roles=["admin"])))
    assert admin.status_code == 200
    assert admin.json() == {"id": 4}
    assert (await client.get("/api/v1/admin")).status_code == 401


@pytest.mark.asyncio
async def test_unreachable_jwks_is_503(
    keyring: JwtKeyring, database_url: str, redis_url: str
) -> None:
    settings = ServiceSettings(
        service_name="kit-authdeps-down",
        database_url=database_url,
        redis_url=redis_url,
        jwks_url=f"http://127.0.0.1:{_closed_port()}/.well-known/jwks.json",
        retry_after_s=4,
    )
    async with app_client(_app(settings)) as http:
        response = await http.get("/api/v1/me", headers=_bearer(keyring.token(1)))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "4"
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.asyncio
async def test_openapi_declares_bearer_scheme(client: httpx.AsyncClient) -> None:
    openapi = (await client.get("/openapi.json")).json()
    scheme = openapi["components"]["securitySchemes"]["AccessToken"]
    assert scheme == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert openapi["paths"]["/api/v1/me"]["get"]["security"] == [{"AccessToken": []}]
