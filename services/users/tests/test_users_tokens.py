"""Tokens over HTTP: claims, throttling, refresh rotation and reuse, logout, key rotation."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from agora_kit.auth import REVOKED_PREFIX, JwtVerifier
from agora_kit.errors import Unauthorized
from agora_kit.testing.poll import eventually
from agora_users.config import KeyAlgorithm, UsersSettings
from agora_users.keys import rotate_folder
from agora_users.testing import (
    ClientFactory,
    bearer,
    login,
    new_email,
    register,
    tokens,
)
from redis.asyncio import Redis

pytestmark = pytest.mark.asyncio(loop_scope="session")

ACCESS_CLAIMS = {"iss", "aud", "sub", "jti", "iat", "exp", "roles", "email_verified"}


async def _jwks(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _decode(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    kid = jwt.get_unverified_header(token)["kid"]
    jwk = next(k for k in jwks["keys"] if k["kid"] == kid)
    key = jwt.PyJWK(jwk)
    claims: dict[str, Any] = jwt.decode(
        token, key.key, algorithms=[jwk["alg"]], audience="agora", issuer="agora-users"
    )
    return claims


async def test_login_issues_access_token_with_the_pinned_claims(
    users_client: ClientFactory,
) -> None:
    client = users_client()
    user, _ = await register(client)
    response = await login(client, user["email"])
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    assert "." not in body["refresh_token"]  # opaque, not a JWT
    assert len(body["refresh_token"]) >= 40

    header = jwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "EdDSA"
    assert header["typ"] == "at+jwt"
    jwks = await _jwks(client)
    assert header["kid"] in {k["kid"] for k in jwks["keys"]}
    claims = _decode(body["access_token"], jwks)
    assert set(claims) == ACCESS_CLAIMS
    assert claims["sub"] == str(user["id"])
    assert claims["roles"] == []
    assert claims["email_verified"] is False
    assert claims["exp"] - claims["iat"] == 900

    me = await client.get("/api/v1/users/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["id"] == user["id"]


async def test_bad_logins_get_one_answer_in_similar_time(users_client: ClientFactory) -> None:
    client = users_client()
    user, _ = await register(client)
    wrong: list[float] = []
    unknown: list[float] = []
    bodies = []
    for _ in range(3):
        started = time.perf_counter()
        bad = await login(client, user["email"], "not the password")
        wrong.append(time.perf_counter() - started)
        started = time.perf_counter()
        missing = await users_client().post(
            "/api/v1/auth/token",
            data={"grant_type": "password", "username": new_email(), "password": "whatever1"},
        )
        unknown.append(time.perf_counter() - started)
        bodies += [(bad.status_code, bad.json()), (missing.status_code, missing.json())]
    assert {status for status, _ in bodies} == {400}
    assert {body["error"] for _, body in bodies} == {"invalid_grant"}
    assert len({body["error_description"] for _, body in bodies}) == 1
    # An unknown address pays for an argon2 verification too (no fast path to tell them apart).
    assert statistics.median(unknown) > 0.4 * statistics.median(wrong)


async def test_failed_logins_are_throttled_per_email_and_client(
    users_client: ClientFactory,
) -> None:
    user, _ = await register(users_client())
    attacker = users_client()
    for _ in range(5):
        response = await login(attacker, user["email"], "wrong password")
        assert response.status_code == 400
    throttled = await login(attacker, user["email"])  # even the right password
    assert throttled.status_code == 429
    assert throttled.headers["content-type"].startswith("application/problem+json")
    assert 1 <= int(throttled.headers["retry-after"]) <= 900
    # The owner, from another address, is not locked out by someone else's guesses.
    assert (await login(users_client(), user["email"])).status_code == 200


async def test_parallel_wrong_passwords_reach_the_hash_at_most_limit_times(
    users_client: ClientFactory, users_settings: UsersSettings
) -> None:
    # docs/security.md, login throttle: it counted only after argon2, so 40 parallel guesses
    # all ran.
    user, _ = await register(users_client())
    attacker = users_client()
    responses = await asyncio.gather(
        *(login(attacker, user["email"], f"wrong password {n}") for n in range(40))
    )
    statuses = Counter(r.status_code for r in responses)
    limit = users_settings.login_max_failures_per_email_client
    # A 400 (invalid_grant) is a password check that ran; 429s never reached the hash.
    assert statuses[400] == limit, statuses
    assert statuses[429] == 40 - limit, statuses
    for response in responses:
        if response.status_code == 429:
            assert int(response.headers["retry-after"]) >= 1
        else:
            assert response.json()["error"] == "invalid_grant"
    owner = await login(users_client(), user["email"])
    assert owner.status_code == 200, owner.text
    assert (await login(attacker, user["email"])).status_code == 429


async def test_an_owners_known_address_outlasts_a_distributed_lockout(
    users_client: ClientFactory, users_settings: UsersSettings
) -> None:
    user, _ = await register(users_client())
    owner = users_client()
    assert (await login(owner, user["email"])).status_code == 200  # this address is now known
    per_pair = users_settings.login_max_failures_per_email_client
    attackers = -(-users_settings.login_max_failures_per_email // per_pair)
    for _ in range(attackers):
        client = users_client()
        await asyncio.gather(
            *(login(client, user["email"], "wrong password") for _ in range(per_pair))
        )
    # The account's own limit is reached: a new address is refused, even with the password...
    assert (await login(users_client(), user["email"])).status_code == 429
    # ...but the address the owner signed in from before is not.
    assert (await login(owner, user["email"])).status_code == 200


async def test_failed_logins_are_throttled_per_client(users_client: ClientFactory) -> None:
    client = users_client()
    form = {"grant_type": "password", "password": "wrong password"}
    for _ in range(20):
        response = await client.post("/api/v1/auth/token", data={**form, "username": new_email()})
        assert response.status_code == 400
    response = await client.post("/api/v1/auth/token", data={**form, "username": new_email()})
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) >= 1
    other = await users_client().post("/api/v1/auth/token", data={**form, "username": new_email()})
    assert other.status_code == 400


async def test_token_endpoint_errors_follow_rfc_6749(users_client: ClientFactory) -> None:
    client = users_client()
    missing = await client.post("/api/v1/auth/token", data={"username": "a@example.com"})
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"
    odd = await client.post("/api/v1/auth/token", data={"grant_type": "client_credentials"})
    assert odd.status_code == 400
    assert odd.json()["error"] == "unsupported_grant_type"
    no_secret = await client.post("/api/v1/auth/token", data={"grant_type": "password"})
    assert no_secret.json()["error"] == "invalid_request"


async def test_refresh_rotates_and_reuse_revokes_the_family(users_client: ClientFactory) -> None:
    client = users_client()
    user, _ = await register(client)
    first = await tokens(client, user["email"])

    second = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert second.status_code == 200, second.text
    pair = second.json()
    assert pair["refresh_token"] != first["refresh_token"]
    assert pair["access_token"] != first["access_token"]
    me = await client.get("/api/v1/users/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200

    # The form grant rotates too.
    third = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]},
    )
    assert third.status_code == 200
    latest = third.json()

    # Replaying a used refresh token: refused, and the whole family is revoked.
    replay = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    after = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": latest["refresh_token"]}
    )
    assert after.status_code == 400
    assert after.json()["error"] == "invalid_grant"
    # Its access tokens are revoked as well.
    revoked = await client.get("/api/v1/users/me", headers=bearer(latest["access_token"]))
    assert revoked.status_code == 401
    assert revoked.headers["www-authenticate"].startswith("Bearer")

    # Another login starts a new family that still works.
    fresh = await tokens(client, user["email"])
    ok = await client.post("/api/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
    assert ok.status_code == 200


async def test_logout_revokes_access_and_refresh_token(
    users_client: ClientFactory, users_settings: UsersSettings
) -> None:
    client = users_client()
    user, _ = await register(client)
    pair = await tokens(client, user["email"])
    headers = bearer(pair["access_token"])
    assert (await client.post("/api/v1/auth/logout", headers=headers)).status_code == 204

    assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 401
    refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert refresh.status_code == 400
    assert refresh.json()["error"] == "invalid_grant"

    # The revocation is where every other service looks: agora:revoked:<jti>, until exp.
    jti = jwt.decode(pair["access_token"], options={"verify_signature": False})["jti"]
    redis = Redis.from_url(users_settings.redis_url, socket_timeout=5)
    try:
        ttl = await redis.ttl(f"{REVOKED_PREFIX}{jti}")
    finally:
        await redis.aclose()
    assert 800 < ttl <= 900 + users_settings.jwt_leeway_s + 1

    unauthenticated = await client.post("/api/v1/auth/logout")
    assert unauthenticated.status_code == 401


async def test_rotated_key_signs_new_tokens_and_old_ones_stay_valid(
    users_client: ClientFactory, users_keys_dir: Path, users_settings: UsersSettings
) -> None:
    client = users_client()
    user, _ = await register(client)
    old = await tokens(client, user["email"])
    old_kid = jwt.get_unverified_header(old["access_token"])["kid"]

    new_kid = rotate_folder(users_keys_dir, KeyAlgorithm.EDDSA, keep_for=timedelta(minutes=20))
    assert new_kid != old_kid

    async def signs_with_new_key() -> bool:
        # No restart: the running app notices the new key set by itself.
        pair = await tokens(client, user["email"])
        return bool(jwt.get_unverified_header(pair["access_token"])["kid"] == new_kid)

    await eventually(signs_with_new_key, timeout_s=10, what="signing with the rotated key")
    kids = {k["kid"] for k in (await _jwks(client))["keys"]}
    assert {old_kid, new_kid} <= kids

    # The old token still works here and at any service verifying through the JWKS.
    assert (await client.get("/api/v1/users/me", headers=bearer(old["access_token"]))).is_success

    async def fetch() -> dict[str, Any]:
        return await _jwks(client)

    redis = Redis.from_url(users_settings.redis_url, socket_timeout=5)
    try:
        verifier = JwtVerifier(
            issuer="agora-users", audience="agora", fetch_jwks=fetch, redis=redis
        )
        assert (await verifier.verify(old["access_token"])).user_id == user["id"]
        new = await tokens(client, user["email"])
        assert (await verifier.verify(new["access_token"])).user_id == user["id"]
        with pytest.raises(Unauthorized):
            await verifier.verify(new["refresh_token"])
    finally:
        await redis.aclose()


async def test_login_with_rsa_keys_uses_rs256(
    users_client: ClientFactory, users_keys_dir: Path
) -> None:
    client = users_client()
    user, _ = await register(client)
    kid = rotate_folder(users_keys_dir, KeyAlgorithm.RS256, keep_for=timedelta(minutes=20))

    async def rs256() -> bool:
        pair = await tokens(client, user["email"])
        header = jwt.get_unverified_header(pair["access_token"])
        return bool(header["kid"] == kid and header["alg"] == "RS256")

    await eventually(rs256, timeout_s=10, what="signing with the RSA key")
    pair = await tokens(client, user["email"])
    claims = _decode(pair["access_token"], await _jwks(client))
    assert set(claims) == ACCESS_CLAIMS

    # Back to Ed25519 for the rest of the session.
    back = rotate_folder(users_keys_dir, KeyAlgorithm.EDDSA, keep_for=timedelta(minutes=20))

    async def eddsa() -> bool:
        pair = await tokens(client, user["email"])
        return bool(jwt.get_unverified_header(pair["access_token"])["kid"] == back)

    await eventually(eddsa, timeout_s=10, what="signing with Ed25519 again")
