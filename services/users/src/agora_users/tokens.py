"""Signing access tokens and one-time tokens; making and hashing opaque refresh tokens."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt
from agora_kit.params import parse_user_id

from agora_users.config import UsersSettings
from agora_users.exceptions import InvalidOneTimeToken
from agora_users.keystore import KeyStore
from agora_users.models import TokenPurpose

ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a JWT typ, not a secret
#: Each one-time token kind has its own ``typ`` (RFC 8725 §3.11) and audience, so neither is
#: ever taken for an access token nor for the other kind.
ONE_TIME_TYPES = {
    TokenPurpose.VERIFY_EMAIL: "verify-email+jwt",
    TokenPurpose.PASSWORD_RESET: "password-reset+jwt",
}
_ONE_TIME_CLAIMS = ("iss", "aud", "sub", "jti", "iat", "exp")


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A signed token with its id and expiry."""

    token: str
    jti: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class OneTimeClaims:
    """The verified claims of a one-time token."""

    user_id: int
    jti: uuid.UUID


class TokenSigner:
    """Signs with the key store's active key; verifies one-time tokens with any unexpired key."""

    def __init__(self, store: KeyStore, settings: UsersSettings) -> None:
        self._store = store
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._one_time_audience = settings.one_time_audience
        self._access_ttl = settings.access_token_ttl_s
        self._leeway = settings.jwt_leeway_s

    def _sign(self, claims: dict[str, object], typ: str) -> str:
        key = self._store.keyset.active
        return jwt.encode(
            claims,
            key.private_key,
            algorithm=key.algorithm.value,
            headers={"kid": key.kid, "typ": typ},
        )

    def access_token(
        self, *, user_id: int, roles: Iterable[str], email_verified: bool
    ) -> IssuedToken:
        """Return an access token with exactly the claims of docs/interfaces.md (Tokens)."""
        now = int(time.time())
        jti = uuid.uuid4().hex
        exp = now + self._access_ttl
        claims: dict[str, object] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": str(user_id),
            "jti": jti,
            "iat": now,
            "exp": exp,
            "roles": sorted(set(roles)),
            "email_verified": email_verified,
        }
        token = self._sign(claims, ACCESS_TOKEN_TYPE)
        return IssuedToken(token=token, jti=jti, expires_at=datetime.fromtimestamp(exp, UTC))

    def one_time_token(self, *, purpose: TokenPurpose, user_id: int, ttl_s: int) -> IssuedToken:
        """Return a verification or reset token (its jti must be stored to make it one-time)."""
        now = int(time.time())
        jti = uuid.uuid4()
        exp = now + ttl_s
        claims: dict[str, object] = {
            "iss": self._issuer,
            "aud": self._one_time_audience,
            "sub": str(user_id),
            "jti": str(jti),
            "iat": now,
            "exp": exp,
        }
        token = self._sign(claims, ONE_TIME_TYPES[purpose])
        return IssuedToken(token=token, jti=str(jti), expires_at=datetime.fromtimestamp(exp, UTC))

    def decode_one_time(self, token: str, purpose: TokenPurpose) -> OneTimeClaims:
        """Verify a one-time token of ``purpose``; raise InvalidOneTimeToken otherwise."""
        try:
            header = jwt.get_unverified_header(token)
            key = self._store.keyset.get(str(header.get("kid")))
            if key is None or header.get("typ") != ONE_TIME_TYPES[purpose]:
                raise InvalidOneTimeToken()
            if header.get("alg") != key.algorithm.value:
                raise InvalidOneTimeToken()
            claims = jwt.decode(
                token,
                key.private_key.public_key(),
                algorithms=[key.algorithm.value],
                audience=self._one_time_audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": list(_ONE_TIME_CLAIMS)},
            )
            user_id = parse_user_id(claims["sub"])
            if user_id is None:
                raise InvalidOneTimeToken()
            return OneTimeClaims(user_id=user_id, jti=uuid.UUID(str(claims["jti"])))
        except (jwt.PyJWTError, ValueError) as exc:
            raise InvalidOneTimeToken() from exc


def new_refresh_token() -> tuple[str, str]:
    """Return a new opaque refresh token and the hash that is stored (never the token)."""
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> str:
    """Return the stored form of a refresh token (256 random bits: a fast hash is enough)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
