"""Administrators: `agora admin create`, `agora keys`, and the admin-only listing."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import jwt
import pytest
from agora_contract import UserRegistered, UserUpdated
from agora_kit.testing.poll import eventually
from agora_users.cli import admin_app, keys_app
from agora_users.config import UsersSettings
from agora_users.keys import MANIFEST
from agora_users.testing import (
    PASSWORD,
    ClientFactory,
    UsersTap,
    bearer,
    new_email,
    register,
    tokens,
)
from typer.testing import CliRunner, Result

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _env(settings: UsersSettings, keys_dir: Path) -> dict[str, str]:
    return {
        "AGORA_ENV": "development",
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "USERS_KEYS_DIR": str(keys_dir),
        "LOG_LEVEL": "WARNING",
    }


async def _invoke(app: object, args: list[str], env: dict[str, str]) -> Result:
    # The commands run their own event loop (asyncio.run): give them a thread of their own.
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, app, args, env=env)  # type: ignore[arg-type]


async def test_admin_create_makes_an_admin_who_can_list_users(
    users_client: ClientFactory,
    users_settings: UsersSettings,
    users_keys_dir: Path,
    users_tap: UsersTap,
) -> None:
    env = _env(users_settings, users_keys_dir)
    email = new_email()
    result = await _invoke(
        admin_app,
        ["create", "--email", email, "--password", PASSWORD, "--name", "Root"],
        env,
    )
    assert result.exit_code == 0, result.output
    assert "created administrator" in result.output

    async def registered() -> bool:
        return any(
            env.type == UserRegistered.event_type and env.data.get("email") == email
            for _t, _k, env in users_tap.messages
        )

    await eventually(registered, what="UserRegistered of the CLI-made admin")

    client = users_client()
    admin = await tokens(client, email)
    claims = jwt.decode(admin["access_token"], options={"verify_signature": False})
    assert claims["roles"] == ["admin"]

    marker = uuid.uuid4().hex[:10]
    for n in range(3):
        await register(client, email=f"list-{marker}-{n}@example.com", name=f"Listed {n}")
    headers = bearer(admin["access_token"])
    page = await client.get(
        "/api/v1/users", params={"search": marker, "limit": 2, "skip": 0}, headers=headers
    )
    assert page.status_code == 200, page.text
    body = page.json()
    assert body["total"] == 3
    assert [u["name"] for u in body["items"]] == ["Listed 0", "Listed 1"]
    assert "hashed_password" not in page.text
    rest = await client.get("/api/v1/users", params={"search": marker, "skip": 2}, headers=headers)
    assert [u["name"] for u in rest.json()["items"]] == ["Listed 2"]
    wildcard = await client.get("/api/v1/users", params={"search": "%"}, headers=headers)
    assert wildcard.json()["total"] == 0  # LIKE wildcards are matched literally

    for params in ({"limit": 0}, {"limit": 101}, {"skip": -1}, {"search": ""}):
        bad = await client.get("/api/v1/users", params=params, headers=headers)
        assert bad.status_code == 422, params
        assert bad.headers["content-type"].startswith("application/problem+json")

    user, _ = await register(client)
    plain = bearer((await tokens(client, user["email"]))["access_token"])
    assert (await client.get("/api/v1/users", headers=plain)).status_code == 403
    assert (await client.get("/api/v1/users")).status_code == 401


async def test_admin_create_promotes_an_existing_account(
    users_client: ClientFactory,
    users_settings: UsersSettings,
    users_keys_dir: Path,
    users_tap: UsersTap,
) -> None:
    client = users_client()
    user, _ = await register(client)
    env = _env(users_settings, users_keys_dir)
    result = await _invoke(admin_app, ["create", "--email", user["email"].upper()], env)
    assert result.exit_code == 0, result.output
    assert "administrator role given to" in result.output

    async def promoted() -> bool:
        return any(
            env.type == UserUpdated.event_type
            and env.subject == str(user["id"])
            and "roles" in env.data.get("changes", {})
            for _t, _k, env in users_tap.messages
        )

    await eventually(promoted, what="UserUpdated with the roles change")
    claims = jwt.decode(
        (await tokens(client, user["email"]))["access_token"],
        options={"verify_signature": False},
    )
    assert claims["roles"] == ["admin"]

    again = await _invoke(admin_app, ["create", "--email", user["email"]], env)
    assert again.exit_code == 0

    bad = await _invoke(admin_app, ["create", "--email", "not an address"], env)
    assert bad.exit_code != 0


async def test_keys_rotate_and_list(users_settings: UsersSettings, tmp_path: Path) -> None:
    env = _env(users_settings, tmp_path / "keys")
    first = await _invoke(keys_app, ["rotate"], env)
    assert first.exit_code == 0, first.output
    second = await _invoke(keys_app, ["rotate", "--algorithm", "RS256"], env)
    assert second.exit_code == 0, second.output
    manifest = json.loads((tmp_path / "keys" / MANIFEST).read_text())
    assert len(manifest["keys"]) == 2
    active = next(k for k in manifest["keys"] if k["kid"] == manifest["active"])
    assert active["alg"] == "RS256"
    assert active["kid"] in second.output
    retired = next(k for k in manifest["keys"] if k["kid"] != manifest["active"])
    assert retired["not_after"] is not None
    assert (tmp_path / "keys" / f"{active['kid']}.pem").stat().st_mode & 0o077 == 0

    emergency = await _invoke(keys_app, ["rotate", "--retire-now"], env)
    assert emergency.exit_code == 0, emergency.output
    manifest = json.loads((tmp_path / "keys" / MANIFEST).read_text())
    assert active["kid"] not in {k["kid"] for k in manifest["keys"]}
    assert not (tmp_path / "keys" / f"{active['kid']}.pem").exists()
    active = next(k for k in manifest["keys"] if k["kid"] == manifest["active"])
    assert active["alg"] == "EdDSA"

    listing = await _invoke(keys_app, ["list"], env)
    assert listing.exit_code == 0
    assert f"{active['kid']}  EdDSA  active" in listing.output
    assert retired["kid"] in listing.output
