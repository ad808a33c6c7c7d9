"""Input no route can store or echo is a 422 problem, never a 500 (docs/security.md).

A real service app over a real Postgres: NUL bytes reach the database, lone surrogates and
non-finite numbers reach the 422 renderer, a 64-bit overflow reaches the driver, and signed
tokens carry subjects that are not user ids.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated

import httpx
import pytest
import pytest_asyncio
from agora_kit.app import create_service_app
from agora_kit.auth_deps import CurrentUserDep
from agora_kit.deps import SessionDep
from agora_kit.settings import ServiceSettings
from agora_kit.testing.app import app_client
from agora_kit.testing.jwt import JwksServer, JwtKeyring
from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import text

PROBLEM = "application/problem+json"


class Thing(BaseModel):
    """A body with a text field and a number."""

    name: str
    weight: float = 1.0
    tags: list[str] = []


def _router() -> APIRouter:
    router = APIRouter()

    @router.post("/things", status_code=201)
    async def create(body: Thing, session: SessionDep) -> dict[str, str]:
        """Store the name (Postgres refuses NUL and cannot be sent a lone surrogate)."""
        value = (await session.execute(text("SELECT CAST(:n AS text)"), {"n": body.name})).scalar()
        return {"name": str(value)}

    @router.get("/search")
    async def search(q: str, session: SessionDep) -> dict[str, str]:
        """Send the query text to the database."""
        value = (await session.execute(text("SELECT CAST(:q AS text)"), {"q": q})).scalar()
        return {"q": str(value)}

    @router.get("/page")
    async def page(session: SessionDep, offset: Annotated[int, Query(ge=0)] = 0) -> dict[str, int]:
        """An unbounded offset that reaches the driver (the backstop's case)."""
        stmt = text("SELECT count(*) FROM (SELECT 1 OFFSET :o) AS t")
        return {"n": int((await session.execute(stmt, {"o": offset})).scalar_one())}

    @router.get("/me")
    async def me(user: CurrentUserDep) -> dict[str, int]:
        """Echo the caller's id."""
        return {"id": user.user_id}

    return router


@pytest.fixture(scope="module")
def keyring() -> JwtKeyring:
    return JwtKeyring()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(
    keyring: JwtKeyring, create_database: Callable[[str], str], redis_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with JwksServer(keyring) as jwks:
        settings = ServiceSettings(
            service_name="kit-badinput",
            database_url=create_database("kit_badinput"),
            redis_url=redis_url,
            jwks_url=jwks.url,
        )
        app = create_service_app(settings, title="bad-input", version="0", routers=[_router()])
        async with app_client(app) as http:
            yield http


def _assert_422(response: httpx.Response) -> dict[str, object]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert isinstance(body, dict)
    assert body["status"] == 422
    return body


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name": "a\\u0000b"}',
        b'{"name": "ok", "tags": ["x", "\\u0000"]}',
        b'{"name": "ok", "\\u0000": 1}',
        b'{"name": "a\\ud800b"}',
        b'{"name": "a\\udfffb", "weight": "x"}',
        b'{"name": "ok", "weight": NaN}',
        b'{"name": "ok", "weight": Infinity}',
        b'{"name": "ok", "weight": -Infinity}',
        b'{"name": "ok", "weight": 1e400}',
        b"1e999999",
        b'{"name": "ok", "weight": 1' + b"0" * 5000 + b"}",
        b'{"name": "\xff\xfe"}',
        b"[" * 1000 + b"]" * 1000,
    ],
)
@pytest.mark.asyncio
async def test_unstorable_json_is_422(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post("/api/v1/things", content=raw, headers=JSON)
    body = _assert_422(response)
    # The refused value is never echoed back.
    assert "\\u0000" not in response.text
    assert "\\ud800" not in response.text.lower()
    assert body["errors"]


@pytest.mark.asyncio
async def test_a_nul_in_a_form_body_or_the_query_is_422(client: httpx.AsyncClient) -> None:
    _assert_422(await client.get("/api/v1/search", params={"q": "a\x00b"}))
    _assert_422(await client.get("/api/v1/search?q=a%00b"))
    assert (await client.get("/api/v1/search", params={"q": "a%b"})).status_code == 200
    form = await client.post("/api/v1/things", data={"name": "a\x00b"})
    _assert_422(form)


@pytest.mark.asyncio
async def test_good_input_still_passes(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/things", json={"name": "Grüße 💡", "weight": 1e300, "tags": ["a"]}
    )
    assert response.status_code == 201, response.text
    assert response.json() == {"name": "Grüße 💡"}


@pytest.mark.asyncio
async def test_an_offset_beyond_64_bits_is_422_not_500(client: httpx.AsyncClient) -> None:
    _assert_422(await client.get("/api/v1/page", params={"offset": 10**19}))
    assert (await client.get("/api/v1/page", params={"offset": 2**63 - 1})).status_code == 200


@pytest.mark.parametrize("sub", ["0", "00", "007", str(2**63), "1" * 40, "-1", "+1", "1.0"])
@pytest.mark.asyncio
async def test_a_signed_subject_that_is_no_user_id_is_401(
    client: httpx.AsyncClient, keyring: JwtKeyring, sub: str
) -> None:
    token = keyring.token(1, claims={"sub": sub})
    response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    good = keyring.token(2**63 - 1)
    response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {good}"})
    assert response.json() == {"id": 2**63 - 1}


def test_a_problem_renders_what_it_echoes() -> None:
    from agora_kit.problems import ProblemResponse

    body = ProblemResponse({"input": ["\ud800", float("nan"), float("inf")]}).body
    assert body == '{"input":["\ufffd","nan","inf"]}'.encode()
