"""Access-token verification: JWKS cache, pinned algorithms, revocation.

The token claims and kinds are those of docs/interfaces.md (Tokens).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
from redis.asyncio import Redis
from redis.exceptions import RedisError

from agora_kit.errors import ServiceUnavailable, Unauthorized
from agora_kit.params import parse_user_id
from agora_kit.settings import ServiceSettings

logger = logging.getLogger("agora.auth")

#: The only key types and algorithms accepted, pinned together: a key decides its algorithm.
KEY_ALGORITHMS: Mapping[str, str] = {"OKP": "EdDSA", "RSA": "RS256"}
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
REQUIRED_CLAIMS = ("iss", "aud", "sub", "jti", "iat", "exp")
REVOKED_PREFIX = "agora:revoked:"
#: Unknown-kid refetches are also spaced globally, so random kids cannot hammer the JWKS.
_GLOBAL_REFETCH_GAP_S = 1.0
#: After a failed fetch with nothing cached, fail fast for this long instead of piling up.
_FAILED_FETCH_BACKOFF_S = 1.0
#: Tokens whose signature and claims were verified, remembered so a client's next requests with
#: the same token skip the signature check (the revocation list is still read every time).
_VERIFIED_MAX = 4096

JwksFetcher = Callable[[], Awaitable[Mapping[str, Any]]]


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller, from a verified access token."""

    user_id: int
    roles: frozenset[str]
    email_verified: bool
    jti: str
    exp: datetime

    @property
    def is_admin(self) -> bool:
        """Whether the caller has the ``admin`` role."""
        return "admin" in self.roles


def http_jwks_fetcher(http: httpx.AsyncClient, url: str, *, timeout_s: float) -> JwksFetcher:
    """Return a fetcher that GETs the JWKS document at ``url`` with a timeout."""

    async def fetch() -> Mapping[str, Any]:
        response = await http.get(url, timeout=timeout_s, headers={"Accept": "application/json"})
        response.raise_for_status()
        document = response.json()
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("JWKS document has no 'keys' list")
        return document

    return fetch


def parse_jwks(document: Mapping[str, Any]) -> dict[str, jwt.PyJWK]:
    """Return the usable signing keys by kid; skip keys of other types, uses or algorithms."""
    keys: dict[str, jwt.PyJWK] = {}
    for data in document.get("keys", []):
        if not isinstance(data, dict) or not isinstance(data.get("kid"), str):
            continue
        kty = data.get("kty")
        if not isinstance(kty, str) or kty not in KEY_ALGORITHMS or data.get("use", "sig") != "sig":
            continue
        if kty == "OKP" and data.get("crv") != "Ed25519":
            continue
        try:
            key = jwt.PyJWK(data, algorithm=KEY_ALGORITHMS[kty])
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
            logger.warning("skipping unusable JWK %s: %s", data.get("kid"), exc)
            continue
        if data.get("alg", key.algorithm_name) != key.algorithm_name:
            continue
        keys[data["kid"]] = key
    return keys


class JwtVerifier:
    """Verify access tokens against the users service's JWKS and the revocation list."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        fetch_jwks: JwksFetcher,
        redis: Redis,
        leeway_s: int = 10,
        cache_ttl_s: float = 300.0,
        refetch_interval_s: float = 10.0,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self._fetch_jwks = fetch_jwks
        self._redis = redis
        self._leeway = leeway_s
        self._ttl = cache_ttl_s
        self._refetch_interval = refetch_interval_s
        self._keys: dict[str, jwt.PyJWK] = {}
        self._expires_at = 0.0
        self._failed_until = 0.0
        self._last_unknown_refetch = float("-inf")
        self._kid_attempts: dict[str, float] = {}
        self._lock = asyncio.Lock()
        self.fetch_count = 0
        #: token -> (principal, exp as epoch seconds, the key set that verified it)
        self._verified: dict[str, tuple[Principal, float, dict[str, jwt.PyJWK]]] = {}

    @classmethod
    def from_settings(
        cls,
        settings: ServiceSettings,
        *,
        redis: Redis,
        http: httpx.AsyncClient,
        fetch_jwks: JwksFetcher | None = None,
    ) -> JwtVerifier:
        """Build the verifier a service uses, fetching the JWKS over HTTP unless told otherwise."""
        return cls(
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            fetch_jwks=fetch_jwks
            or http_jwks_fetcher(http, settings.jwks_url, timeout_s=settings.http_timeout_s),
            redis=redis,
            leeway_s=settings.jwt_leeway_s,
            cache_ttl_s=settings.jwks_cache_ttl_s,
            refetch_interval_s=settings.jwks_refetch_interval_s,
        )

    async def _refresh_locked(self) -> None:
        """Fetch the JWKS (caller holds the lock); keep stale keys if the fetch fails."""
        now = time.monotonic()
        if not self._keys and now < self._failed_until:
            raise ServiceUnavailable("The signing keys cannot be fetched right now.")
        self.fetch_count += 1
        try:
            keys = parse_jwks(await self._fetch_jwks())
        except (httpx.HTTPError, ValueError, TimeoutError) as exc:
            logger.warning("JWKS fetch failed: %s: %s", type(exc).__name__, exc)
            if not self._keys:
                self._failed_until = time.monotonic() + _FAILED_FETCH_BACKOFF_S
                raise ServiceUnavailable("The signing keys cannot be fetched right now.") from exc
            # Serve the cached keys a little longer and try again soon.
            self._expires_at = time.monotonic() + min(self._ttl, 5.0)
            return
        self._keys = keys
        self._expires_at = time.monotonic() + self._ttl

    async def _key_for(self, kid: str) -> jwt.PyJWK | None:
        if time.monotonic() >= self._expires_at:
            async with self._lock:
                if time.monotonic() >= self._expires_at:
                    await self._refresh_locked()
        key = self._keys.get(kid)
        if key is not None:
            return key
        async with self._lock:
            # Another request may have refetched while this one waited for the lock.
            key = self._keys.get(kid)
            now = time.monotonic()
            last = self._kid_attempts.get(kid, float("-inf"))
            if (
                key is None
                and now - last >= self._refetch_interval
                and now - self._last_unknown_refetch >= _GLOBAL_REFETCH_GAP_S
            ):
                if len(self._kid_attempts) > 1024:
                    self._kid_attempts.clear()
                self._kid_attempts[kid] = now
                self._last_unknown_refetch = now
                await self._refresh_locked()
                key = self._keys.get(kid)
        return key

    async def verify(self, token: str) -> Principal:
        """Return the principal of a valid, unrevoked access token; raise ``Unauthorized``."""
        principal = self._remembered(token) or await self._verify_signed(token)
        if await self.is_revoked(principal.jti):
            raise Unauthorized("The access token has been revoked.")
        return principal

    def _remembered(self, token: str) -> Principal | None:
        """The principal of ``token`` verified earlier, while its key set and expiry still hold.

        The same token (same bytes) was verified against the key set in use now, which is still
        within its cache lifetime: checking the signature again would give the same answer.
        Only the expiry moves, so it is checked again, with the same leeway.
        """
        entry = self._verified.get(token)
        if entry is None:
            return None
        principal, exp, keys = entry
        if keys is not self._keys or time.monotonic() >= self._expires_at:
            return None
        if time.time() >= exp + self._leeway:
            del self._verified[token]
            return None
        return principal

    async def _verify_signed(self, token: str) -> Principal:
        """Check the token's header, signature and claims; remember the result."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized("The access token is malformed.") from exc
        alg, kid, typ = header.get("alg"), header.get("kid"), header.get("typ")
        if alg not in KEY_ALGORITHMS.values():
            raise Unauthorized("The token's algorithm is not accepted.")
        if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
            raise Unauthorized("The token is not an access token.")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("The token has no key id.")
        key = await self._key_for(kid)
        if key is None:
            raise Unauthorized("The token is signed with an unknown key.")
        if key.algorithm_name != alg:
            raise Unauthorized("The token's algorithm does not match its key.")
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=[key.algorithm_name],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self._leeway,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("The access token has expired.") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("The access token is invalid.") from exc
        principal = _principal(claims)
        if len(self._verified) >= _VERIFIED_MAX:
            self._verified.pop(next(iter(self._verified)))  # the oldest entry
        self._verified[token] = (principal, float(claims["exp"]), self._keys)
        return principal

    async def is_revoked(self, jti: str) -> bool:
        """Whether ``jti`` is on the revocation list (Redis down → 503, never a pass)."""
        try:
            return bool(await self._redis.exists(f"{REVOKED_PREFIX}{jti}"))
        except (RedisError, OSError) as exc:
            raise ServiceUnavailable("Token revocation cannot be checked right now.") from exc


def _principal(claims: Mapping[str, Any]) -> Principal:
    roles, jti = claims.get("roles", []), claims["jti"]
    # A signed "0" or a 20-digit subject is still not a user id: it would reach the database.
    user_id = parse_user_id(claims["sub"])
    if user_id is None:
        raise Unauthorized("The token's subject is not a user id.")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise Unauthorized("The token's roles are malformed.")
    if not isinstance(jti, str) or not jti:
        raise Unauthorized("The token has no id.")
    exp = claims["exp"]
    if not isinstance(exp, int | float):
        raise Unauthorized("The token's expiry is malformed.")
    return Principal(
        user_id=user_id,
        roles=frozenset(roles),
        email_verified=claims.get("email_verified") is True,
        jti=jti,
        exp=datetime.fromtimestamp(exp, tz=UTC),
    )
