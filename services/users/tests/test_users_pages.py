"""The HTML pages behind the mailed links: GET shows a form, POST uses the token up."""

from __future__ import annotations

import logging
import uuid

import httpx
import pytest
from agora_contract import SendEmailVerification, SendPasswordReset
from agora_users.testing import (
    PASSWORD,
    ClientFactory,
    UsersTap,
    bearer,
    login,
    new_request_id,
    register,
    tokens,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

NEW_PASSWORD = "a page-chosen passphrase"
HOSTILE = '"><script>alert(1)</script><a href="x'
BROKEN = "invalid, has expired or was already used"


async def _command_token(tap: UsersTap, request_id: str, kind: str) -> str:
    """Return the one-time token of the ``kind`` command the request caused."""
    await tap.wait_for(request_id, 1)
    await tap.settle()
    (envelope,) = [env for _t, _k, env in tap.caused_by(request_id) if env.type == kind]
    return str(envelope.data["token"])


async def _verification_token(client: httpx.AsyncClient, tap: UsersTap) -> tuple[str, str]:
    user, request_id = await register(client)
    return user["email"], await _command_token(tap, request_id, SendEmailVerification.event_type)


async def _reset_token(client: httpx.AsyncClient, tap: UsersTap, email: str) -> str:
    request_id = new_request_id()
    response = await client.post(
        "/api/v1/auth/password-reset", json={"email": email}, headers={"X-Request-ID": request_id}
    )
    assert response.status_code == 202, response.text
    return await _command_token(tap, request_id, SendPasswordReset.event_type)


async def _email_verified(client: httpx.AsyncClient, email: str) -> bool:
    pair = await tokens(client, email)
    me = await client.get("/api/v1/users/me", headers=bearer(pair["access_token"]))
    return bool(me.json()["email_verified"])


def _assert_page(response: httpx.Response, status: int) -> str:
    """Check what every page carries; return its text."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "<script" not in response.text
    return response.text


async def test_verify_page_shows_a_button_and_only_the_post_verifies(
    users_client: ClientFactory, users_tap: UsersTap
) -> None:
    client = users_client()
    email, token = await _verification_token(client, users_tap)

    for _ in range(2):  # a mail scanner's prefetch, then the person's click
        page = _assert_page(await client.get("/verify-email", params={"token": token}), 200)
        assert '<form method="post" action="/verify-email">' in page
        assert f'<input type="hidden" name="token" value="{token}">' in page
        assert "Confirm my email address</button>" in page
    assert await _email_verified(client, email) is False

    done = _assert_page(await client.post("/verify-email", data={"token": token}), 200)
    assert "your email address is verified" in done
    assert await _email_verified(client, email) is True

    # A second click (or a retry after a lost answer) is told the same.
    again = _assert_page(await client.post("/verify-email", data={"token": token}), 200)
    assert "your email address is verified" in again
    api = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert api.status_code == 200


async def test_missing_invalid_and_wrong_kind_tokens_get_the_400_page(
    users_client: ClientFactory, users_tap: UsersTap
) -> None:
    client = users_client()
    email, verify_token = await _verification_token(client, users_tap)
    access_token = (await tokens(client, email))["access_token"]
    for path in ("/verify-email", "/reset-password"):
        missing = _assert_page(await client.get(path), 400)
        assert "The link is incomplete" in missing
        assert "<form" not in missing
        _assert_page(await client.get(path, params={"token": ""}), 400)
        _assert_page(await client.get(path, params={"token": "x" * 5000}), 400)
        for bad in ("not-a-token", access_token):
            page = _assert_page(await client.get(path, params={"token": bad}), 400)
            assert BROKEN in page
            assert "<form" not in page
    # A verification token is no reset token, and the other way round.
    wrong = await client.get("/reset-password", params={"token": verify_token})
    assert BROKEN in _assert_page(wrong, 400)
    for data in ({}, {"token": "not-a-token"}, {"token": access_token}):
        _assert_page(await client.post("/verify-email", data=data), 400)
    assert await _email_verified(client, email) is False


async def test_reset_page_sets_the_password_when_both_match(
    users_client: ClientFactory, users_tap: UsersTap
) -> None:
    client = users_client()
    user, _ = await register(client)
    email = user["email"]
    session = await tokens(client, email)
    token = await _reset_token(client, users_tap, email)

    for _ in range(2):
        form = _assert_page(await client.get("/reset-password", params={"token": token}), 200)
        assert '<form method="post" action="/reset-password">' in form
        assert f'<input type="hidden" name="token" value="{token}">' in form
        assert 'name="password" type="password"' in form
        assert 'name="password_confirm" type="password"' in form

    mismatch = await client.post(
        "/reset-password",
        data={"token": token, "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD + "!"},
    )
    page = _assert_page(mismatch, 422)
    assert "The two passwords are not the same" in page
    assert f'name="token" value="{token}"' in page  # the form again, ready to retry
    assert NEW_PASSWORD not in page  # passwords are never echoed
    short = await client.post(
        "/reset-password", data={"token": token, "password": "short", "password_confirm": "short"}
    )
    assert "too short" in _assert_page(short, 422)
    # Nothing changed: the old password still signs in, the token is still good.
    assert (await login(users_client(), email, PASSWORD)).status_code == 200

    confirm = await client.post(
        "/reset-password",
        data={"token": token, "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
    )
    assert "Your password has been changed" in _assert_page(confirm, 200)
    assert (await login(users_client(), email, PASSWORD)).status_code == 400
    assert (await login(users_client(), email, NEW_PASSWORD)).status_code == 200
    # As with the API: every earlier session has ended.
    me = await client.get("/api/v1/users/me", headers=bearer(session["access_token"]))
    assert me.status_code == 401

    reused = await client.post(
        "/reset-password",
        data={"token": token, "password": "yet another one", "password_confirm": "yet another one"},
    )
    assert BROKEN in _assert_page(reused, 400)
    assert (await login(users_client(), email, NEW_PASSWORD)).status_code == 200


async def test_a_hostile_token_is_escaped_or_not_shown(users_client: ClientFactory) -> None:
    client = users_client()
    for path in ("/verify-email", "/reset-password"):
        page = _assert_page(await client.get(path, params={"token": HOSTILE}), 400)
        assert HOSTILE not in page
    # The reset form comes back with the (unchecked) token when the passwords differ.
    response = await client.post(
        "/reset-password",
        data={"token": HOSTILE, "password": NEW_PASSWORD, "password_confirm": "something else"},
    )
    page = _assert_page(response, 422)
    assert HOSTILE not in page
    escaped = "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;a href=&quot;x"
    assert f'<input type="hidden" name="token" value="{escaped}">' in page
    invalid = await client.post(
        "/reset-password",
        data={"token": HOSTILE, "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
    )
    assert HOSTILE not in _assert_page(invalid, 400)


async def test_pages_are_not_in_the_schema_and_never_replayed(
    users_client: ClientFactory,
) -> None:
    client = users_client()
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "/verify-email" not in paths
    assert "/reset-password" not in paths
    # An Idempotency-Key must not store a page that holds a token (as on /api/v1/auth).
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    data = {"token": "a-token", "password": NEW_PASSWORD, "password_confirm": "other"}
    for _ in range(2):
        response = await client.post("/reset-password", data=data, headers=headers)
        _assert_page(response, 422)
        assert "idempotent-replayed" not in response.headers


async def test_the_token_stays_out_of_the_logs(
    users_client: ClientFactory, users_tap: UsersTap, caplog: pytest.LogCaptureFixture
) -> None:
    client = users_client()
    _email, token = await _verification_token(client, users_tap)
    with caplog.at_level(logging.INFO):
        await client.get("/verify-email", params={"token": token})
        await client.post("/verify-email", data={"token": token})
        await client.post("/verify-email", data={"token": token})
    access = [r.msg for r in caplog.records if r.name == "agora.access"]
    assert [line["path"] for line in access if isinstance(line, dict)] == ["/verify-email"] * 3
    # "httpx" is the test's own client logging the URL it asked for, not the service.
    for record in (r for r in caplog.records if r.name != "httpx"):
        assert token not in record.getMessage()
        assert token not in str(record.msg)
