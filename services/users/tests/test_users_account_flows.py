"""Account flows over HTTP: verify, profile, email and password changes, reset, delete."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa
from agora_contract import (
    Envelope,
    SendEmailVerification,
    SendPasswordReset,
    UserDeleted,
    UserEmailChanged,
    UserUpdated,
)
from agora_contract.topics import NOTIFIER_COMMANDS, USERS_EVENTS
from agora_users.models import OneTimeToken, RefreshToken, User
from agora_users.testing import (
    PASSWORD,
    ClientFactory,
    UsersTap,
    bearer,
    login,
    new_email,
    new_request_id,
    register,
    tokens,
)
from sqlalchemy.ext.asyncio import AsyncEngine

pytestmark = pytest.mark.asyncio(loop_scope="session")

NEW_PASSWORD = "a brand new passphrase"


def _of_type(messages: list[tuple[str, bytes | None, Envelope]], event_type: str) -> list[Envelope]:
    return [env for _topic, _key, env in messages if env.type == event_type]


async def _verification_token(tap: UsersTap, request_id: str) -> str:
    await tap.wait_for(request_id, 1)

    async def command() -> list[Envelope]:
        return _of_type(tap.caused_by(request_id), SendEmailVerification.event_type)

    await tap.settle()
    (envelope,) = await command()
    return SendEmailVerification.model_validate(envelope.data).token


async def test_verify_email_marks_the_address_and_is_one_time(
    users_client: ClientFactory, users_tap: UsersTap
) -> None:
    client = users_client()
    user, request_id = await register(client)
    token = await _verification_token(users_tap, request_id)

    # A verification token is never an access token.
    assert (await client.get("/api/v1/users/me", headers=bearer(token))).status_code == 401

    verify_id = new_request_id()
    response = await client.post(
        "/api/v1/auth/verify-email", json={"token": token}, headers={"X-Request-ID": verify_id}
    )
    assert response.status_code == 200, response.text
    pair = await tokens(client, user["email"])
    me = await client.get("/api/v1/users/me", headers=bearer(pair["access_token"]))
    assert me.json()["email_verified"] is True

    (event,) = _of_type(await users_tap.wait_for(verify_id, 1), UserUpdated.event_type)
    assert event.aggregateversion == 2
    assert UserUpdated.model_validate(event.data).changes["email_verified"].new is True

    # A retry (its first answer lost) gets the same answer, and publishes nothing new.
    again_id = new_request_id()
    again = await client.post(
        "/api/v1/auth/verify-email", json={"token": token}, headers={"X-Request-ID": again_id}
    )
    assert again.status_code == 200, again.text
    assert again.json() == response.json()
    await users_tap.settle()
    assert users_tap.caused_by(again_id) == []
    # Nor is an access token a verification token.
    wrong_kind = await client.post(
        "/api/v1/auth/verify-email", json={"token": pair["access_token"]}
    )
    assert wrong_kind.status_code == 400
    garbage = await client.post("/api/v1/auth/verify-email", json={"token": "not-a-token"})
    assert garbage.status_code == 400


async def test_patch_me_changes_the_name_and_publishes_the_change(
    users_client: ClientFactory, users_tap: UsersTap
) -> None:
    client = users_client()
    user, _ = await register(client, name="Ada")
    headers = bearer((await tokens(client, user["email"]))["access_token"])
    request_id = new_request_id()
    response = await client.patch(
        "/api/v1/users/me", json={"name": "Ada L."}, headers={**headers, "X-Request-ID": request_id}
    )
    assert response.status_code == 200
    assert response.json()["name"] == "Ada L."
    (event,) = await users_tap.wait_for(request_id, 1)
    assert event[2].type == UserUpdated.event_type
    changes = UserUpdated.model_validate(event[2].data).changes
    assert (changes["name"].old, changes["name"].new) == ("Ada", "Ada L.")

    same_id = new_request_id()
    same = await client.patch(
        "/api/v1/users/me", json={"name": "Ada L."}, headers={**headers, "X-Request-ID": same_id}
    )
    assert same.status_code == 200
    assert same.json()["name"] == "Ada L."

    refused = await client.patch("/api/v1/users/me", json={"roles": ["admin"]}, headers=headers)
    assert refused.status_code == 422
    bad = await client.patch("/api/v1/users/me", json={"name": "tab\x0bbed"}, headers=headers)
    assert bad.status_code == 422
    assert (await client.patch("/api/v1/users/me", json={"name": "x"})).status_code == 401
    await users_tap.settle()
    assert users_tap.caused_by(same_id) == []  # no change, no event


async def test_email_change_needs_the_password_and_emits_one_event(
    users_client: ClientFactory, users_tap: UsersTap
) -> None:
    client = users_client()
    user, register_id = await register(client)
    old_token = await _verification_token(users_tap, register_id)
    headers = bearer((await tokens(client, user["email"]))["access_token"])
    new = new_email()

    wrong_id = new_request_id()
    wrong = await client.put(
        "/api/v1/users/me/email",
        json={"new_email": new, "current_password": "not my password"},
        headers={**headers, "X-Request-ID": wrong_id},
    )
    assert wrong.status_code == 403
    assert wrong.headers["content-type"].startswith("application/problem+json")

    taken = await client.put(
        "/api/v1/users/me/email",
        json={
            "new_email": (await register(users_client()))[0]["email"],
            "current_password": PASSWORD,
        },
        headers=headers,
    )
    assert taken.status_code == 409

    request_id = new_request_id()
    response = await client.put(
        "/api/v1/users/me/email",
        json={"new_email": new.upper(), "current_password": PASSWORD},
        headers={**headers, "X-Request-ID": request_id},
    )
    assert response.status_code == 200, response.text
    assert response.json()["email"] == new
    assert response.json()["email_verified"] is False

    await users_tap.wait_for(request_id, 2)
    await users_tap.settle()
    assert users_tap.caused_by(wrong_id) == []
    messages = users_tap.caused_by(request_id)
    events = [m for m in messages if m[0] == USERS_EVENTS]
    assert len(events) == 1
    assert events[0][1] == str(user["id"]).encode()
    assert events[0][2].type == UserEmailChanged.event_type
    data = UserEmailChanged.model_validate(events[0][2].data)
    assert (data.old_email, data.new_email) == (user["email"], new)
    (command,) = [m for m in messages if m[0] == NOTIFIER_COMMANDS]
    assert SendEmailVerification.model_validate(command[2].data).email == new

    assert (await login(client, new)).status_code == 200
    assert (await login(users_client(), user["email"])).status_code == 400
    # The token mailed to the old address no longer verifies anything.
    stale = await client.post("/api/v1/auth/verify-email", json={"token": old_token})
    assert stale.status_code == 400


async def test_password_change_needs_the_current_one_and_ends_other_sessions(
    users_client: ClientFactory,
) -> None:
    client = users_client()
    user, _ = await register(client)
    current = await tokens(client, user["email"])
    other = await tokens(users_client(), user["email"])
    headers = bearer(current["access_token"])

    wrong = await client.put(
        "/api/v1/users/me/password",
        json={"current_password": "nope nope", "new_password": NEW_PASSWORD},
        headers=headers,
    )
    assert wrong.status_code == 403
    short = await client.put(
        "/api/v1/users/me/password",
        json={"current_password": PASSWORD, "new_password": "short"},
        headers=headers,
    )
    assert short.status_code == 422

    response = await client.put(
        "/api/v1/users/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=headers,
    )
    assert response.status_code == 204
    assert (await login(users_client(), user["email"])).status_code == 400
    assert (await login(users_client(), user["email"], NEW_PASSWORD)).status_code == 200
    # This session goes on; the other one has ended.
    assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 200
    refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": current["refresh_token"]}
    )
    assert refresh.status_code == 200
    other_refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": other["refresh_token"]}
    )
    assert other_refresh.status_code == 400
    gone = await client.get("/api/v1/users/me", headers=bearer(other["access_token"]))
    assert gone.status_code == 401


async def _reset(client: httpx.AsyncClient, email: str) -> tuple[httpx.Response, str]:
    request_id = new_request_id()
    response = await client.post(
        "/api/v1/auth/password-reset", json={"email": email}, headers={"X-Request-ID": request_id}
    )
    return response, request_id


async def test_password_reset_answers_alike_and_mails_known_addresses_only(
    users_client: ClientFactory, users_tap: UsersTap
) -> None:
    client = users_client()
    user, _ = await register(client)
    session = await tokens(client, user["email"])
    known, known_id = await _reset(client, user["email"].upper())
    unknown, unknown_id = await _reset(client, new_email())
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()

    await users_tap.wait_for(known_id, 1)
    await users_tap.settle()
    assert users_tap.caused_by(unknown_id) == []
    ((topic, key, envelope),) = users_tap.caused_by(known_id)
    assert (topic, key) == (NOTIFIER_COMMANDS, str(user["id"]).encode())
    command = SendPasswordReset.model_validate(envelope.data)
    assert command.email == user["email"]

    assert (await client.get("/api/v1/users/me", headers=bearer(command.token))).status_code == 401
    confirm = await client.post(
        "/api/v1/auth/password-reset/confirm",
        json={"token": command.token, "new_password": NEW_PASSWORD},
    )
    assert confirm.status_code == 200, confirm.text
    assert (await login(users_client(), user["email"], NEW_PASSWORD)).status_code == 200
    assert (await login(users_client(), user["email"])).status_code == 400
    # Every earlier session has ended.
    old_session = await client.get("/api/v1/users/me", headers=bearer(session["access_token"]))
    assert old_session.status_code == 401
    reused = await client.post(
        "/api/v1/auth/password-reset/confirm",
        json={"token": command.token, "new_password": "yet another one"},
    )
    assert reused.status_code == 400
    assert reused.headers["content-type"].startswith("application/problem+json")


async def test_password_reset_requests_are_rate_limited(users_client: ClientFactory) -> None:
    client = users_client()
    statuses = [(await _reset(client, new_email()))[0].status_code for _ in range(11)]
    assert statuses[:10] == [202] * 10
    assert statuses[10] == 429
    bad = await users_client().post("/api/v1/auth/password-reset", json={"email": "nope"})
    assert bad.status_code == 422


async def test_delete_me_erases_the_account_and_publishes_user_deleted(
    users_client: ClientFactory, users_tap: UsersTap, users_engine: AsyncEngine
) -> None:
    client = users_client()
    user, _ = await register(client)
    pair = await tokens(client, user["email"])
    headers = bearer(pair["access_token"])
    request_id = new_request_id()
    response = await client.delete(
        "/api/v1/users/me", headers={**headers, "X-Request-ID": request_id}
    )
    assert response.status_code == 204

    ((topic, key, envelope),) = await users_tap.wait_for(request_id, 1)
    assert (topic, key, envelope.type) == (
        USERS_EVENTS,
        str(user["id"]).encode(),
        UserDeleted.event_type,
    )
    assert envelope.aggregateversion == 2
    assert (await client.get(f"/api/v1/users/{user['id']}")).status_code == 404
    assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 401
    assert (await login(client, user["email"])).status_code == 400
    refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert refresh.status_code == 400
    async with users_engine.connect() as conn:
        for table, column in (
            (User, User.id),
            (RefreshToken, RefreshToken.user_id),
            (OneTimeToken, OneTimeToken.user_id),
        ):
            count = await conn.scalar(
                sa.select(sa.func.count()).select_from(table).where(column == user["id"])
            )
            assert count == 0, table
    # The address is free again.
    await register(client, email=user["email"])
