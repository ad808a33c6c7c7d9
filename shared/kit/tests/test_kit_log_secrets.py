"""No secret of a request reaches the logs when it fails unexpectedly (docs/security.md).

Tracebacks used to be logged with every frame's local variables: the request body (a
cleartext password), the Authorization header, and asyncpg messages that echo the value
they refused.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import pytest
from agora_kit.app import create_service_app
from agora_kit.deps import SessionDep
from agora_kit.logging import scrub_text
from agora_kit.settings import ServiceSettings
from agora_kit.testing.app import app_client
from fastapi import APIRouter, FastAPI, Header
from pydantic import BaseModel
from sqlalchemy import text


class Login(BaseModel):
    """A body with a password."""

    email: str
    password: str


def _app(settings: ServiceSettings) -> FastAPI:
    router = APIRouter()

    @router.post("/crash")
    async def crash(body: Login, session: SessionDep, authorization: str = Header()) -> None:
        """Fail with a driver error that quotes the password, holding both secrets."""
        bearer = authorization.removeprefix("Bearer ")
        assert bearer  # a local holding the token, as real handlers have
        await session.execute(text("SELECT CAST(:v AS integer)"), {"v": body.password})

    @router.post("/fail")
    async def fail(body: Login, authorization: str = Header()) -> None:
        """Fail with a plain error while the secrets are locals."""
        secrets = {"password": body.password, "authorization": authorization}
        raise RuntimeError(f"something broke after {len(secrets)} checks")

    return create_service_app(settings, title="log-secrets", version="0", routers=[router])


@pytest.mark.parametrize("log_json", [True, False], ids=["json", "console"])
@pytest.mark.parametrize("path", ["/api/v1/crash", "/api/v1/fail"])
@pytest.mark.asyncio(loop_scope="session")
async def test_unhandled_errors_log_no_secret(
    log_json: bool,
    path: str,
    create_database: Callable[[str], str],
    redis_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    password = f"Pw-{uuid.uuid4().hex}"
    token = f"eyJhbGciOiJFZERTQSJ9.{uuid.uuid4().hex}.{uuid.uuid4().hex}"
    settings = ServiceSettings(
        service_name="kit-log-secrets",
        database_url=create_database("kit_log_secrets"),
        redis_url=redis_url,
        log_json=log_json,
        log_level="INFO",
    )
    async with app_client(_app(settings)) as http:
        capsys.readouterr()
        response = await http.post(
            path,
            json={"email": "owner@example.test", "password": password},
            headers={"Authorization": f"Bearer {token}"},
        )
    # A value the database refuses (the cast) is bad input now, 422; the rest is a 500. Either
    # way the driver's message quoting the password goes through the log.
    assert response.status_code == (422 if path.endswith("/crash") else 500)
    logged = capsys.readouterr().err
    if path.endswith("/fail"):
        assert "unhandled error" in logged  # the error itself is logged, with its traceback
        assert "Traceback" in logged or '"exc_type"' in logged
    else:
        assert "unstorable value" in logged  # logged as a warning, the value left out
    # Every secret the request carried, whole and in parts a truncated dump would keep.
    for secret in (password, token, token[:24], password[3:15], token.split(".")[1]):
        assert secret not in logged, f"{secret!r} leaked into the {path} log"
    logging.getLogger().handlers.clear()


@pytest.mark.parametrize(
    ("message", "kept", "gone"),
    [
        (
            "invalid input for query argument $1: 'Pw-secret' (str object cannot be an int)",
            "invalid input for query argument $1: [redacted]",
            "Pw-secret",
        ),
        (
            "1 validation error for X\npassword\n  String too short "
            "[type=string_too_short, input_value='hunter22', input_type=str]",
            "input_value=[redacted], input_type=str",
            "hunter22",
        ),
        (
            "bad header Authorization: Bearer abc.def.ghi here",
            "Authorization: Bearer [redacted]",
            "abc.def.ghi",
        ),
    ],
)
def test_scrub_text_removes_echoed_values(message: str, kept: str, gone: str) -> None:
    scrubbed = scrub_text(message)
    assert kept in scrubbed
    assert gone not in scrubbed
