"""Every error of a real service app is an RFC 9457 problem; dependencies down give 503."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import pytest_asyncio
import redis.exceptions
import sqlalchemy.exc
from agora_kit import errors, outages, problems
from agora_kit.app import create_service_app
from agora_kit.deps import RedisDep, SessionDep
from agora_kit.settings import ServiceSettings
from agora_kit.testing.app import app_client
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, Field
from sqlalchemy import text

PROBLEM = "application/problem+json"


class SignUp(BaseModel):
    """A body with a secret field."""

    email: str = Field(min_length=3)
    password: str = Field(min_length=12)
    age: int = Field(ge=0)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _router() -> APIRouter:
    router = APIRouter()

    @router.get("/things/{thing_id}")
    async def get_thing(thing_id: int) -> dict[str, int]:
        """Return a thing."""
        if thing_id == 404:
            raise errors.NotFound(f"Thing {thing_id} does not exist.")
        return {"id": thing_id}

    @router.post("/signups", status_code=201)
    async def sign_up(body: SignUp) -> dict[str, str]:
        """Accept a sign-up."""
        return {"email": body.email}

    @router.get("/boom")
    async def boom() -> None:
        """Fail unexpectedly."""
        raise RuntimeError("secret internals: password=hunter2")

    @router.get("/domain/{kind}")
    async def domain(kind: str) -> None:
        """Raise the domain error named ``kind``."""
        raise {
            "conflict": errors.Conflict("Already there."),
            "forbidden": errors.Forbidden("Not yours."),
            "precondition": errors.PreconditionFailed("Version moved on."),
            "unauthorized": errors.Unauthorized("Bad token."),
            "throttled": errors.TooManyRequests("Slow down.", retry_after=30),
            "unavailable": errors.ServiceUnavailable("Mail is down."),
            "bad": errors.BadRequest("Nope."),
        }[kind]

    @router.get("/db")
    async def db(session: SessionDep) -> dict[str, int]:
        """Query the database."""
        return {"one": (await session.execute(text("SELECT 1"))).scalar_one()}

    @router.get("/cache")
    async def cache(redis: RedisDep) -> dict[str, bool]:
        """Ping Redis."""
        return {"pong": bool(await redis.ping())}

    return router


def _app(settings: ServiceSettings) -> FastAPI:
    return create_service_app(settings, title="errors-test", version="0", routers=[_router()])


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(
    create_database: Callable[[str], str], redis_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = ServiceSettings(
        service_name="kit-errors", database_url=create_database("kit_errors"), redis_url=redis_url
    )
    async with app_client(_app(settings)) as http:
        yield http


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def down_client() -> AsyncIterator[httpx.AsyncClient]:
    settings = ServiceSettings(
        service_name="kit-errors-down",
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/none",
        redis_url=f"redis://127.0.0.1:{_closed_port()}/0",
        redis_retries=1,
        db_connect_timeout_s=2,
        retry_after_s=7,
    )
    async with app_client(_app(settings)) as http:
        yield http


def _assert_problem(response: httpx.Response, status: int, path: str) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, object] = response.json()
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert str(body["type"]).startswith(("https://agora.dev/problems/", "about:blank"))
    assert body["instance"] == path
    assert body["request_id"] == response.headers["x-request-id"]
    return body


@pytest.mark.asyncio
async def test_unknown_route_is_404_problem(client: httpx.AsyncClient) -> None:
    body = _assert_problem(await client.get("/api/v1/nowhere"), 404, "/api/v1/nowhere")
    assert body["type"] == "https://agora.dev/problems/not-found"


@pytest.mark.asyncio
async def test_wrong_method_is_405_problem_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.delete("/api/v1/signups")
    _assert_problem(response, 405, "/api/v1/signups")
    assert "POST" in response.headers["allow"]


@pytest.mark.asyncio
async def test_validation_error_lists_errors_without_secrets(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/signups", json={"email": "x", "password": "Zq9-tiny", "age": -1}
    )
    body = _assert_problem(response, 422, "/api/v1/signups")
    assert body["type"] == "https://agora.dev/problems/validation-error"
    found = {tuple(e["loc"]): e for e in body["errors"]}  # type: ignore[attr-defined]
    assert set(found) == {("body", "email"), ("body", "password"), ("body", "age")}
    assert all({"loc", "msg", "type"} <= set(e) for e in found.values())
    assert found[("body", "email")]["input"] == "x"
    assert "input" not in found[("body", "password")]
    assert "Zq9-tiny" not in response.text


@pytest.mark.asyncio
async def test_missing_field_does_not_echo_sibling_secrets(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/signups", json={"email": "a@b.c", "password": "long-enough-secret"}
    )
    _assert_problem(response, 422, "/api/v1/signups")
    assert "long-enough-secret" not in response.text


@pytest.mark.asyncio
async def test_path_validation_is_422_problem(client: httpx.AsyncClient) -> None:
    body = _assert_problem(await client.get("/api/v1/things/abc"), 422, "/api/v1/things/abc")
    assert body["errors"][0]["loc"] == ["path", "thing_id"]  # type: ignore[index]


@pytest.mark.asyncio
async def test_unhandled_error_is_logged_500_without_traceback(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="agora.errors"):
        response = await client.get("/api/v1/boom")
    body = _assert_problem(response, 500, "/api/v1/boom")
    assert body["type"] == "https://agora.dev/problems/internal-error"
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    logged = [r for r in caplog.records if r.name == "agora.errors" and r.exc_info]
    assert logged, "the unhandled error must be logged with its traceback"


@pytest.mark.parametrize(
    ("kind", "status", "slug"),
    [
        ("conflict", 409, "conflict"),
        ("forbidden", 403, "forbidden"),
        ("precondition", 412, "precondition-failed"),
        ("unauthorized", 401, "unauthorized"),
        ("throttled", 429, "too-many-requests"),
        ("unavailable", 503, "service-unavailable"),
        ("bad", 400, "bad-request"),
    ],
)
@pytest.mark.asyncio
async def test_domain_errors_map_to_problems(
    client: httpx.AsyncClient, kind: str, status: int, slug: str
) -> None:
    path = f"/api/v1/domain/{kind}"
    response = await client.get(path)
    body = _assert_problem(response, status, path)
    assert body["type"] == f"https://agora.dev/problems/{slug}"
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    if status == 429:
        assert response.headers["retry-after"] == "30"
    if status == 503:
        assert int(response.headers["retry-after"]) >= 1


@pytest.mark.asyncio
async def test_domain_not_found_keeps_its_detail(client: httpx.AsyncClient) -> None:
    body = _assert_problem(await client.get("/api/v1/things/404"), 404, "/api/v1/things/404")
    assert body["detail"] == "Thing 404 does not exist."
    assert (await client.get("/api/v1/things/5")).json() == {"id": 5}


@pytest.mark.asyncio
async def test_real_dependencies_answer(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/db")).json() == {"one": 1}
    assert (await client.get("/api/v1/cache")).json() == {"pong": True}


@pytest.mark.parametrize(
    ("path", "dependency"), [("/api/v1/db", "database"), ("/api/v1/cache", "redis")]
)
@pytest.mark.asyncio
async def test_dependency_down_is_503_with_retry_after(
    down_client: httpx.AsyncClient, path: str, dependency: str
) -> None:
    response = await down_client.get(path)
    body = _assert_problem(response, 503, path)
    assert response.headers["retry-after"] == "7"
    assert body["dependency"] == dependency
    assert "Traceback" not in response.text


def test_dependency_down_classifies_exceptions() -> None:
    lost = sqlalchemy.exc.DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True)
    assert outages.dependency_down(lost) == "database"
    operational = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("admin shutdown"))
    assert outages.dependency_down(operational) == "database"
    duplicate = sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate key"))
    assert outages.dependency_down(duplicate) is None
    assert outages.dependency_down(sqlalchemy.exc.TimeoutError("pool exhausted")) == "database"
    assert outages.dependency_down(redis.exceptions.ConnectionError("refused")) == "redis"
    assert outages.dependency_down(redis.exceptions.TimeoutError("slow")) == "redis"
    assert outages.dependency_down(redis.exceptions.ResponseError("WRONGTYPE")) is None
    assert outages.dependency_down(ConnectionRefusedError(111, "refused")) == "upstream"
    assert outages.dependency_down(TimeoutError()) == "upstream"
    assert outages.dependency_down(FileNotFoundError(2, "missing")) is None
    assert outages.dependency_down(ValueError("bug")) is None


def test_validation_errors_redact_nested_secrets() -> None:
    raw = [
        {
            "loc": ("body", "profile"),
            "msg": "bad",
            "type": "value_error",
            "input": {"name": "n", "api_token": "t0k3n", "nested": [{"password": "p"}]},
        },
    ]
    (item,) = problems.validation_errors(raw)
    assert item["input"] == {
        "name": "n",
        "api_token": "[redacted]",
        "nested": [{"password": "[redacted]"}],
    }


class _DriverError(Exception):
    """A driver error carrying a SQLSTATE, as SQLAlchemy's asyncpg adapter raises them."""

    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "down"),
    [
        ("57P03", True),  # the database system is starting up (crash recovery)
        ("57P01", True),  # terminating connection due to administrator command
        ("57P02", True),  # crash shutdown
        ("08006", True),  # connection failure
        ("53300", True),  # too many connections
        ("23505", False),  # unique violation: a bug or a conflict, not an outage
        ("40001", False),  # serialization failure
    ],
)
def test_a_restarting_database_is_a_dependency_down(sqlstate: str, down: bool) -> None:
    exc = sqlalchemy.exc.DBAPIError("INSERT", {}, _DriverError("server says no", sqlstate))
    assert outages.dependency_down(exc) == ("database" if down else None)
