"""JwtVerifier against a real loopback JWKS server and the session's Redis."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from agora_kit.auth import JwtVerifier, http_jwks_fetcher, parse_jwks
from agora_kit.errors import ServiceUnavailable, Unauthorized
from agora_kit.redis import create_redis
from agora_kit.settings import ServiceSettings
from agora_kit.testing.jwt import JwksServer, JwtKeyring
from cryptography.hazmat.primitives import serialization
from redis.asyncio import Redis


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    head = _b64(json.dumps(header).encode())
    body = _b64(json.dumps(claims).encode())
    return f"{head}.{body}.{_b64(signature)}"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def keyring() -> JwtKeyring:
    return JwtKeyring()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def jwks(keyring: JwtKeyring) -> AsyncIterator[JwksServer]:
    async with JwksServer(keyring) as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = create_redis(ServiceSettings(redis_url=redis_url))
    try:
        yield client
    finally:
        await client.aclose()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


def _verifier(
    http: httpx.AsyncClient, redis: Redis, url: str, *, refetch_interval_s: float = 10.0
) -> JwtVerifier:
    return JwtVerifier(
        issuer="agora-users",
        audience="agora",
        fetch_jwks=http_jwks_fetcher(http, url, timeout_s=2),
        redis=redis,
        refetch_interval_s=refetch_interval_s,
    )


@pytest.fixture
def verifier(http: httpx.AsyncClient, redis: Redis, jwks: JwksServer) -> JwtVerifier:
    return _verifier(http, redis, jwks.url)


@pytest.mark.asyncio
async def test_valid_token_gives_principal(keyring: JwtKeyring, verifier: JwtVerifier) -> None:
    jti = uuid.uuid4().hex
    token = keyring.token(42, roles=["admin"], email_verified=False, jti=jti)
    principal = await verifier.verify(token)
    assert principal.user_id == 42
    assert principal.roles == frozenset({"admin"})
    assert principal.is_admin
    assert principal.email_verified is False
    assert principal.jti == jti
    assert principal.exp.timestamp() > 0


@pytest.mark.asyncio
async def test_rs256_token_is_accepted_and_alg_must_match_key(
    http: httpx.AsyncClient, redis: Redis
) -> None:
    ring = JwtKeyring()
    rsa_key = ring.rotate("RS256")
    async with JwksServer(ring) as server:
        verifier = _verifier(http, redis, server.url)
        assert (await verifier.verify(ring.token(7))).user_id == 7
        # An RS256 header naming the Ed25519 key: the key decides the algorithm.
        ed_key = ring.keys[0]
        _, body, sig = ring.token(7, key=ed_key).split(".")
        head = _b64(json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": ed_key.kid}).encode())
        with pytest.raises(Unauthorized, match="does not match"):
            await verifier.verify(f"{head}.{body}.{sig}")
        # And the other way round: an EdDSA header naming the RSA key.
        _, body, sig = ring.token(7, key=rsa_key).split(".")
        head = _b64(json.dumps({"alg": "EdDSA", "typ": "at+jwt", "kid": rsa_key.kid}).encode())
        with pytest.raises(Unauthorized, match="does not match"):
            await verifier.verify(f"{head}.{body}.{sig}")


@pytest.mark.parametrize(
    ("claims", "headers", "reason"),
    [
        ({"exp": 1_000_000}, {}, "expired"),
        ({"aud": "someone-else"}, {}, "invalid"),
        ({"iss": "evil-issuer"}, {}, "invalid"),
        ({}, {"typ": "JWT"}, "not an access token"),
        ({}, {"typ": "verify-email+jwt"}, "not an access token"),
        ({}, {"typ": None}, "not an access token"),
        ({"jti": None}, {}, "invalid"),
        ({"sub": None}, {}, "invalid"),
        ({"iat": None}, {}, "invalid"),
        ({"sub": "alice"}, {}, "subject"),
        ({"roles": "admin"}, {}, "roles"),
    ],
    ids=[
        "expired",
        "wrong-aud",
        "wrong-iss",
        "typ-jwt",
        "typ-other-kind",
        "typ-missing",
        "no-jti",
        "no-sub",
        "no-iat",
        "sub-not-id",
        "roles-not-list",
    ],
)
@pytest.mark.asyncio
async def test_bad_tokens_are_unauthorized(
    keyring: JwtKeyring,
    verifier: JwtVerifier,
    claims: dict[str, Any],
    headers: dict[str, Any],
    reason: str,
) -> None:
    token = keyring.token(1, claims=claims, headers=headers)
    with pytest.raises(Unauthorized) as info:
        await verifier.verify(token)
    assert reason in str(info.value)
    assert info.value.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


@pytest.mark.asyncio
async def test_alg_none_is_rejected(keyring: JwtKeyring, verifier: JwtVerifier) -> None:
    header = {"alg": "none", "typ": "at+jwt", "kid": keyring.current.kid}
    with pytest.raises(Unauthorized, match="algorithm"):
        await verifier.verify(_unsigned(header, keyring.claims(1)))


@pytest.mark.asyncio
async def test_hs256_signed_with_the_public_key_is_rejected(
    keyring: JwtKeyring, verifier: JwtVerifier
) -> None:
    public_pem = keyring.current.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "at+jwt", "kid": keyring.current.kid}
    unsigned = _unsigned(header, keyring.claims(1))
    signing_input = unsigned.rsplit(".", 1)[0].encode()
    signature = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    with pytest.raises(Unauthorized, match="algorithm"):
        await verifier.verify(f"{signing_input.decode()}.{_b64(signature)}")


@pytest.mark.asyncio
async def test_tampered_payload_is_rejected(keyring: JwtKeyring, verifier: JwtVerifier) -> None:
    head, _, sig = keyring.token(5).split(".")
    forged = _b64(json.dumps({**keyring.claims(1, roles=["admin"])}).encode())
    with pytest.raises(Unauthorized, match="invalid"):
        await verifier.verify(f"{head}.{forged}.{sig}")
    with pytest.raises(Unauthorized, match="malformed"):
        await verifier.verify("not-a-jwt")


@pytest.mark.asyncio
async def test_unknown_kid_refetches_once_then_rejects(
    keyring: JwtKeyring, verifier: JwtVerifier, jwks: JwksServer
) -> None:
    await verifier.verify(keyring.token(1))  # warm the cache
    before = jwks.fetches
    stranger = JwtKeyring().token(1)  # same claims, a key the JWKS does not list
    with pytest.raises(Unauthorized, match="unknown key"):
        await verifier.verify(stranger)
    assert jwks.fetches == before + 1
    # Within the refetch interval the same kid does not hit the JWKS again.
    with pytest.raises(Unauthorized, match="unknown key"):
        await verifier.verify(stranger)
    assert jwks.fetches == before + 1


@pytest.mark.asyncio
async def test_rotation_is_picked_up_on_unknown_kid(http: httpx.AsyncClient, redis: Redis) -> None:
    ring = JwtKeyring()
    async with JwksServer(ring) as server:
        verifier = _verifier(http, redis, server.url)
        old_token = ring.token(3)
        assert (await verifier.verify(old_token)).user_id == 3
        assert server.fetches == 1
        ring.rotate()
        new_token = ring.token(4)
        assert (await verifier.verify(new_token)).user_id == 4
        assert server.fetches == 2
        # Both keys are listed during the rotation, so old tokens still verify from cache.
        assert (await verifier.verify(old_token)).user_id == 3
        assert server.fetches == 2


@pytest.mark.asyncio
async def test_revoked_jti_is_rejected(
    keyring: JwtKeyring, verifier: JwtVerifier, redis: Redis
) -> None:
    jti = uuid.uuid4().hex
    token = keyring.token(9, jti=jti)
    assert (await verifier.verify(token)).jti == jti
    await redis.set(f"agora:revoked:{jti}", b"1", ex=60)
    with pytest.raises(Unauthorized, match="revoked"):
        await verifier.verify(token)


@pytest.mark.asyncio
async def test_unreachable_jwks_is_service_unavailable(
    keyring: JwtKeyring, http: httpx.AsyncClient, redis: Redis
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/.well-known/jwks.json"
    verifier = _verifier(http, redis, url)
    with pytest.raises(ServiceUnavailable):
        await verifier.verify(keyring.token(1))


@pytest.mark.asyncio
async def test_unreachable_redis_fails_closed(keyring: JwtKeyring, jwks: JwksServer) -> None:
    settings = ServiceSettings(redis_url=f"redis://127.0.0.1:{_closed_port()}/0", redis_retries=0)
    down = create_redis(settings)
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            verifier = _verifier(http, down, jwks.url)
            with pytest.raises(ServiceUnavailable, match="revocation"):
                await verifier.verify(keyring.token(1))
    finally:
        await down.aclose()


def test_parse_jwks_keeps_only_signing_keys_of_pinned_types(keyring: JwtKeyring) -> None:
    good = keyring.current.public_jwk()
    document = {
        "keys": [
            good,
            {"kty": "oct", "kid": "hmac", "k": _b64(b"secret-secret-secret")},
            {**good, "kid": "enc", "use": "enc"},
            {**good, "kid": "wrong-alg", "alg": "RS256"},
            {"kty": "RSA", "kid": "broken", "n": "AQAB"},
            "not-a-key",
        ]
    }
    assert list(parse_jwks(document)) == [good["kid"]]


@pytest.mark.asyncio
async def test_a_remembered_token_skips_the_signature_but_not_expiry_or_revocation(
    keyring: JwtKeyring, verifier: JwtVerifier, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    jti = uuid.uuid4().hex
    token = keyring.token(5, jti=jti)
    assert (await verifier.verify(token)).user_id == 5

    decoded: list[str] = []
    real_decode = jwt.decode

    def counting_decode(*args: Any, **kwargs: Any) -> Any:
        decoded.append("decode")
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting_decode)
    assert (await verifier.verify(token)).user_id == 5
    assert decoded == []  # the same token, the same key set: no second signature check

    # Past its expiry (plus the leeway) the token is not taken from memory: it goes through
    # the full check again, whose own expiry test then applies.
    exp = int(jwt.decode(token, options={"verify_signature": False})["exp"])
    monkeypatch.setattr(time, "time", lambda: exp + verifier._leeway + 1)
    assert verifier._remembered(token) is None
    monkeypatch.undo()

    # And the revocation list, every time.
    await redis.set(f"agora:revoked:{jti}", b"1", ex=60)
    with pytest.raises(Unauthorized, match="revoked"):
        await verifier.verify(token)
