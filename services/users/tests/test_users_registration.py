"""Registration over HTTP: the stored account, the events on the real topics, bad input."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from agora_contract import SendEmailVerification, UserRegistered
from agora_contract.topics import NOTIFIER_COMMANDS, USERS_EVENTS
from agora_users.models import User
from agora_users.testing import (
    PASSWORD,
    ClientFactory,
    UsersTap,
    bearer,
    new_email,
    new_request_id,
    register,
    tokens,
)
from argon2 import extract_parameters
from argon2.low_level import Type
from sqlalchemy.ext.asyncio import AsyncEngine

pytestmark = pytest.mark.asyncio(loop_scope="session")

PRIVATE_WORDS = ("password", "hash", "argon2")


async def test_registration_publishes_one_user_registered(
    users_client: ClientFactory, users_tap: UsersTap
) -> None:
    client = users_client()
    email = new_email()
    request_id = new_request_id()
    response = await client.post(
        "/api/v1/users",
        json={"email": email.upper(), "name": "  Ada Lovelace ", "password": PASSWORD},
        headers={"X-Request-ID": request_id},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["X-Request-ID"] == request_id
    assert response.headers["Location"] == f"/api/v1/users/{body['id']}"
    assert body["email"] == email  # normalised to lower case
    assert body["name"] == "Ada Lovelace"  # trimmed
    assert body["email_verified"] is False
    assert body["roles"] == []
    assert not any(word in response.text.lower() for word in PRIVATE_WORDS)

    await users_tap.wait_for(request_id, 2)
    await users_tap.settle()
    messages = users_tap.caused_by(request_id)
    events = [m for m in messages if m[0] == USERS_EVENTS]
    commands = [m for m in messages if m[0] == NOTIFIER_COMMANDS]
    assert len(events) == 1, events
    _topic, key, envelope = events[0]
    assert key == str(body["id"]).encode()
    assert envelope.type == UserRegistered.event_type
    assert envelope.subject == str(body["id"])
    assert envelope.aggregateversion == 1
    assert envelope.correlationid == request_id
    data = UserRegistered.model_validate(envelope.data)
    assert (data.user_id, data.email, data.name) == (body["id"], email, "Ada Lovelace")
    assert "password" not in str(envelope.data)

    assert len(commands) == 1
    command = SendEmailVerification.model_validate(commands[0][2].data)
    assert commands[0][1] == str(body["id"]).encode()
    assert command.email == email
    assert command.token.count(".") == 2  # a signed JWT


async def test_stored_hash_is_argon2id_with_strong_parameters(
    users_client: ClientFactory, users_engine: AsyncEngine
) -> None:
    body, _ = await register(users_client())
    async with users_engine.connect() as conn:
        hashed = await conn.scalar(sa.select(User.hashed_password).where(User.id == body["id"]))
    assert hashed is not None
    assert PASSWORD not in hashed
    params = extract_parameters(hashed)
    assert params.type is Type.ID
    assert params.memory_cost >= 19 * 1024
    assert params.time_cost >= 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "not-an-email"),
        ("email", "two@@example.com"),
        ("email", "Ada <ada@example.com>"),
        ("password", "Zq7-pw!"),
        ("password", "x" * 129),
        ("name", "bell\x07char"),
        ("name", "two\nlines"),
        ("name", "line\u2028separator"),
        ("name", "   "),
        ("name", "n" * 101),
        ("name", ""),
    ],
)
async def test_invalid_registration_is_a_422_problem(
    users_client: ClientFactory, field: str, value: str
) -> None:
    payload = {"email": new_email(), "name": "Ada", "password": PASSWORD, field: value}
    response = await users_client().post("/api/v1/users", json=payload)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 422
    assert [e["loc"] for e in problem["errors"]] == [["body", field]]
    if field == "password":
        assert value not in response.text  # a submitted password is never echoed


async def test_duplicate_email_is_409_whatever_the_case(users_client: ClientFactory) -> None:
    client = users_client()
    email = new_email()
    await register(client, email=email)
    response = await client.post(
        "/api/v1/users",
        json={"email": email.upper(), "name": "Someone Else", "password": PASSWORD},
    )
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "already exists" in response.json()["detail"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", 1),
        ("roles", ["admin"]),
        ("is_active", False),
        ("hashed_password", "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA"),
        ("email_verified", True),
    ],
)
async def test_mass_assignment_fields_are_rejected(
    users_client: ClientFactory, users_engine: AsyncEngine, field: str, value: object
) -> None:
    email = new_email()
    payload = {"email": email, "name": "Mallory", "password": PASSWORD, field: value}
    response = await users_client().post("/api/v1/users", json=payload)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["body", field]
    async with users_engine.connect() as conn:
        assert await conn.scalar(sa.select(User.id).where(User.email == email)) is None


async def test_public_profile_shows_id_and_name_only(users_client: ClientFactory) -> None:
    client = users_client()
    body, _ = await register(client, name="Grace Hopper")
    response = await client.get(f"/api/v1/users/{body['id']}")
    assert response.status_code == 200
    assert response.json() == {"id": body["id"], "name": "Grace Hopper"}

    missing = await client.get("/api/v1/users/999999999")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert (await client.get("/api/v1/users/0")).status_code == 422


async def test_a_non_ascii_mailbox_name_is_refused_with_a_clear_422(
    users_client: ClientFactory,
) -> None:
    """docs/security.md, finding 7: such an address was accepted, then its mail dead-lettered."""
    client = users_client()
    response = await client.post(
        "/api/v1/users",
        json={"email": "jörg@example.com", "name": "Jörg", "password": PASSWORD},
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    [error] = response.json()["errors"]
    assert error["loc"] == ["body", "email"]
    assert "must be ASCII" in error["msg"]
    # A non-ASCII domain is fine, and so is an ASCII mailbox name.
    ok = await client.post(
        "/api/v1/users",
        json={
            "email": new_email().replace("example.com", "bücher.example"),
            "name": "B",
            "password": PASSWORD,
        },
    )
    assert ok.status_code == 201, ok.text
    assert ok.json()["email"].endswith("@xn--bcher-kva.example")
    user, _ = await register(client)
    session = await tokens(client, user["email"])
    change = await client.put(
        "/api/v1/users/me/email",
        json={"new_email": "zoë@example.com", "current_password": PASSWORD},
        headers=bearer(session["access_token"]),
    )
    assert change.status_code == 422, change.text
