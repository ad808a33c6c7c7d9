"""A client's whole life over HTTP, with the messages it leaves on the real topics."""

from __future__ import annotations

import pytest
from agora_contract import (
    SendEmailVerification,
    UserDeleted,
    UserEmailChanged,
    UserRegistered,
    UserUpdated,
)
from agora_contract.topics import NOTIFIER_COMMANDS, USERS_EVENTS
from agora_users.testing import (
    PASSWORD,
    ClientFactory,
    UsersTap,
    bearer,
    new_email,
    new_request_id,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_register_verify_login_refresh_change_logout_delete(
    users_client: ClientFactory, users_tap: UsersTap
) -> None:
    client = users_client()
    rid = {step: new_request_id() for step in ("register", "verify", "email", "delete")}
    email = new_email()

    created = await client.post(
        "/api/v1/users",
        json={"email": email, "name": "Journey", "password": PASSWORD},
        headers={"X-Request-ID": rid["register"]},
    )
    assert created.status_code == 201
    user_id = created.json()["id"]
    await users_tap.wait_for(rid["register"], 2)
    await users_tap.settle()
    (command,) = users_tap.caused_by(rid["register"], NOTIFIER_COMMANDS)
    token = SendEmailVerification.model_validate(command[2].data).token

    verified = await client.post(
        "/api/v1/auth/verify-email", json={"token": token}, headers={"X-Request-ID": rid["verify"]}
    )
    assert verified.status_code == 200

    login = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": email, "password": PASSWORD},
    )
    assert login.status_code == 200
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": login.json()["refresh_token"]}
    )
    assert refreshed.status_code == 200
    pair = refreshed.json()
    headers = bearer(pair["access_token"])

    new = new_email()
    changed = await client.put(
        "/api/v1/users/me/email",
        json={"new_email": new, "current_password": PASSWORD},
        headers={**headers, "X-Request-ID": rid["email"]},
    )
    assert changed.status_code == 200
    password = await client.put(
        "/api/v1/users/me/password",
        json={"current_password": PASSWORD, "new_password": "another good passphrase"},
        headers=headers,
    )
    assert password.status_code == 204

    assert (await client.post("/api/v1/auth/logout", headers=headers)).status_code == 204
    assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 401

    again = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": new, "password": "another good passphrase"},
    )
    assert again.status_code == 200
    deleted = await client.delete(
        "/api/v1/users/me",
        headers={**bearer(again.json()["access_token"]), "X-Request-ID": rid["delete"]},
    )
    assert deleted.status_code == 204

    await users_tap.wait_for(rid["delete"], 1)
    await users_tap.settle()
    key = str(user_id).encode()
    # One key, one partition: the user's events arrive in the order they happened.
    events = [
        (env.type, env.aggregateversion)
        for topic, k, env in users_tap.messages
        if topic == USERS_EVENTS and k == key and env.correlationid in rid.values()
    ]
    assert events == [
        (UserRegistered.event_type, 1),
        (UserUpdated.event_type, 2),
        (UserEmailChanged.event_type, 3),
        (UserDeleted.event_type, 4),
    ]
    commands = {
        step: [env.type for _t, _k, env in users_tap.caused_by(rid[step], NOTIFIER_COMMANDS)]
        for step in rid
    }
    assert commands == {
        "register": [SendEmailVerification.event_type],
        "verify": [],
        "email": [SendEmailVerification.event_type],
        "delete": [],
    }
