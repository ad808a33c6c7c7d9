"""The HTTP API's contract (auth, validation, pagination) and the `agora dlq` CLI."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
from agora_contract import SendEmailVerification, SendPasswordReset, UserRegistered
from agora_kit.consumer.deadletter_table import ErrorKind
from agora_kit.consumer.deadletters import store_dead_letter
from agora_kit.consumer.retry import Record
from agora_kit.db import create_engine
from agora_kit.testing.jwt import JwtKeyring
from agora_kit.testing.mail import MailApi
from agora_notifier import models
from agora_notifier.cli import dlq_app
from agora_notifier.config import NotifierSettings
from agora_notifier.testing import Publisher
from fastapi import FastAPI
from typer.testing import CliRunner

NewUser = Callable[[], tuple[int, str]]
PROBLEM = "application/problem+json"


def bearer(keyring: JwtKeyring, user_id: int, *roles: str) -> dict[str, str]:
    """Authorization header of a valid access token."""
    return {"Authorization": f"Bearer {keyring.token(user_id, roles=roles)}"}


@pytest.mark.asyncio
async def test_errors_are_problem_json(
    notifier_app: FastAPI, notifier_client: httpx.AsyncClient, jwt_keyring: JwtKeyring
) -> None:
    anonymous = await notifier_client.get("/api/v1/notifications")
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == PROBLEM
    assert anonymous.headers["www-authenticate"].startswith("Bearer")

    user = bearer(jwt_keyring, 7)
    bad_page = await notifier_client.get("/api/v1/notifications?limit=0", headers=user)
    assert bad_page.status_code == 422
    assert bad_page.headers["content-type"] == PROBLEM
    assert bad_page.json()["errors"][0]["loc"] == ["query", "limit"]
    bad_status = await notifier_client.get("/api/v1/notifications?status=lost", headers=user)
    assert bad_status.status_code == 422

    # The document says boolean: 0, 1 and "true" are refused, not coerced (docs/security.md).
    bodies: tuple[dict[str, object], ...] = (
        {"item_mail": "maybe"},
        {"item_mail": True, "sms": True},
        {},
        {"item_mail": 0},
        {"item_mail": 1},
        {"item_mail": "true"},
    )
    for body in bodies:
        put = await notifier_client.put(
            "/api/v1/notifications/preferences", json=body, headers=user
        )
        assert put.status_code == 422, body
        assert put.headers["content-type"] == PROBLEM

    forbidden = await notifier_client.get("/api/v1/notifications/dead-letters", headers=user)
    assert forbidden.status_code == 403
    assert forbidden.headers["content-type"] == PROBLEM
    admin = bearer(jwt_keyring, 1, "admin")
    missing = await notifier_client.get(
        "/api/v1/notifications/dead-letters/999999999", headers=admin
    )
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no dead letter 999999999"

    ready = await notifier_client.get("/health/ready")
    assert ready.status_code == 200

    # The 405 names every method the path serves, not the first route's only.
    wrong = await notifier_client.post("/api/v1/notifications/preferences", headers=user)
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET, PUT"
    # ... and the OpenAPI document says what each route can answer, as problem+json.
    doc = (await notifier_client.get("/openapi.json")).json()
    dead_letter = doc["paths"]["/api/v1/notifications/dead-letters/{dead_letter_id}"]["delete"]
    assert {"401", "403", "404", "422", "503"} <= dead_letter["responses"].keys()
    for path_item in doc["paths"].values():
        for operation in path_item.values():
            for code, response in operation["responses"].items():
                if int(code) >= 400:
                    assert list(response["content"]) == [PROBLEM], (code, operation)


@pytest.mark.asyncio
async def test_deliveries_are_paginated_newest_first_and_private(
    notifier_app: FastAPI,
    notifier_client: httpx.AsyncClient,
    jwt_keyring: JwtKeyring,
    notifier_publish: Publisher,
    notifier_mail: MailApi,
    notifier_new_user: NewUser,
) -> None:
    user_id, email = notifier_new_user()
    now = datetime.now(UTC)
    await notifier_publish.event(
        UserRegistered(user_id=user_id, email=email, name="Pat", registered_at=now)
    )
    await notifier_publish.verified(user_id)  # a reset goes to a verified address only
    for command in (SendEmailVerification, SendPasswordReset):
        await notifier_publish.event(
            command(user_id=user_id, email=email, name="Pat", token="t", expires_at=now)
        )
    await notifier_mail.wait_for(email, count=3)
    headers = bearer(jwt_keyring, user_id)
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        page = (
            await notifier_client.get("/api/v1/notifications?status=sent", headers=headers)
        ).json()
        if page["total"] == 3:
            break
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.2)
    first = (await notifier_client.get("/api/v1/notifications?limit=2", headers=headers)).json()
    second = (
        await notifier_client.get("/api/v1/notifications?limit=2&skip=2", headers=headers)
    ).json()
    assert first["total"] == 3
    assert len(first["items"]) == 2
    assert len(second["items"]) == 1
    assert (second["skip"], second["limit"]) == (2, 2)
    # `offset`, the deprecated alias, still pages the same; given both, `skip` wins.
    legacy = await notifier_client.get("/api/v1/notifications?limit=2&offset=2", headers=headers)
    assert legacy.json()["items"] == second["items"]
    assert legacy.json()["offset"] == 2
    both = await notifier_client.get("/api/v1/notifications?skip=2&offset=0", headers=headers)
    assert both.json()["items"] == second["items"]
    ids = [d["id"] for d in first["items"] + second["items"]]
    assert ids == sorted(ids, reverse=True)
    item = first["items"][0]
    assert item["recipient"] == email
    assert item["message_id"].startswith("<")
    assert item["status"] == "sent"
    other = await notifier_client.get(
        "/api/v1/notifications", headers=bearer(jwt_keyring, user_id + 1)
    )
    assert other.json()["total"] == 0


def test_dlq_cli_lists_shows_replays_and_discards(
    notifier_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = f"cli-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DATABASE_URL", notifier_database)
    monkeypatch.setenv("NOTIFIER_CONSUMER_GROUP", group)

    async def seed() -> list[int]:
        engine = create_engine(NotifierSettings(database_url=notifier_database))
        ids: list[int] = []
        try:
            async with engine.begin() as conn:
                for offset in (1, 2, 3):
                    new_id = await store_dead_letter(
                        conn,
                        models.consumer.dead_letter,
                        outbox=models.outbox,
                        group=group,
                        record=Record(
                            topic="cli.topic", partition=0, offset=offset, key=b"k", value=b"{bad"
                        ),
                        error="malformed: boom",
                        kind=ErrorKind.MALFORMED,
                        attempts=0,
                    )
                    assert new_id is not None
                    ids.append(new_id)
        finally:
            await engine.dispose()
        return ids

    first, second, third = asyncio.run(seed())
    runner = CliRunner()
    listed = runner.invoke(dlq_app, ["list"])
    assert listed.exit_code == 0, listed.output
    assert str(first) in listed.output
    assert "malformed" in listed.output
    as_json = runner.invoke(dlq_app, ["list", "--json"])
    assert {json.loads(line)["id"] for line in as_json.output.splitlines()} == {
        first,
        second,
        third,
    }
    shown = runner.invoke(dlq_app, ["show", str(first)])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["value"] == "{bad"
    replayed = runner.invoke(dlq_app, ["replay", str(first)])
    assert replayed.exit_code == 0, replayed.output
    assert "replayed" in replayed.output
    again = runner.invoke(dlq_app, ["replay", str(first)])
    assert again.exit_code == 1
    assert "not pending" in again.output
    discarded = runner.invoke(dlq_app, ["discard", str(second)])
    assert discarded.exit_code == 0, discarded.output
    neither = runner.invoke(dlq_app, ["replay"])
    assert neither.exit_code == 2
    every = runner.invoke(dlq_app, ["replay", "--all-pending"])
    assert every.exit_code == 0, every.output
    assert f"dead letter {third} replayed" in every.output
    assert "1 dead letter(s) replayed" in every.output
    pending = runner.invoke(dlq_app, ["list", "--status", "pending"])
    assert "no dead letters" in pending.output
    missing = runner.invoke(dlq_app, ["show", "999999999"])
    assert missing.exit_code == 1
    assert "no dead letter" in missing.output
