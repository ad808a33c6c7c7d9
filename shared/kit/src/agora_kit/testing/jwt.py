"""Test signing keys, access tokens and a real loopback JWKS server for services' tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm

JWKS_PATH = "/.well-known/jwks.json"


@dataclass(frozen=True)
class SigningKey:
    """One private key with its ``kid`` and algorithm."""

    kid: str
    alg: str
    private: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey

    def public_jwk(self) -> dict[str, Any]:
        """Return the public key as a JWK with ``kid``, ``alg`` and ``use``."""
        public = self.private.public_key()
        if isinstance(public, ed25519.Ed25519PublicKey):
            jwk: dict[str, Any] = OKPAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}


class JwtKeyring:
    """Signing keys like the users service's: the newest signs, all stay in the JWKS."""

    def __init__(self, *, issuer: str = "agora-users", audience: str = "agora") -> None:
        self.issuer = issuer
        self.audience = audience
        self.keys: list[SigningKey] = []
        self.rotate()

    @property
    def current(self) -> SigningKey:
        """The key that signs new tokens."""
        return self.keys[-1]

    def rotate(self, alg: str = "EdDSA") -> SigningKey:
        """Add a new signing key (Ed25519, or RSA for ``RS256``) and make it current."""
        private: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
        if alg == "EdDSA":
            private = ed25519.Ed25519PrivateKey.generate()
        elif alg == "RS256":
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            raise ValueError(f"unsupported algorithm {alg}")
        key = SigningKey(kid=uuid.uuid4().hex[:16], alg=alg, private=private)
        self.keys.append(key)
        return key

    def retire(self, kid: str) -> None:
        """Drop a key from the JWKS (tokens it signed stop verifying after a refetch)."""
        self.keys = [k for k in self.keys if k.kid != kid]

    def jwks(self) -> dict[str, Any]:
        """Return the JWKS document listing every key."""
        return {"keys": [k.public_jwk() for k in self.keys]}

    def claims(
        self,
        user_id: int,
        *,
        roles: Iterable[str] = (),
        email_verified: bool = True,
        ttl_s: int = 900,
        jti: str | None = None,
    ) -> dict[str, Any]:
        """Return the claims of a valid access token for ``user_id``."""
        now = int(time.time())
        return {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(user_id),
            "jti": jti or uuid.uuid4().hex,
            "iat": now,
            "exp": now + ttl_s,
            "roles": list(roles),
            "email_verified": email_verified,
        }

    def token(
        self,
        user_id: int,
        *,
        roles: Iterable[str] = (),
        email_verified: bool = True,
        ttl_s: int = 900,
        jti: str | None = None,
        key: SigningKey | None = None,
        claims: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """Sign an access token; ``claims``/``headers`` override fields (None removes one)."""
        body = self.claims(
            user_id, roles=roles, email_verified=email_verified, ttl_s=ttl_s, jti=jti
        )
        for name, value in (claims or {}).items():
            if value is None:
                body.pop(name, None)
            else:
                body[name] = value
        key = key or self.current
        header: dict[str, Any] = {"typ": "at+jwt", "kid": key.kid}
        header.update(headers or {})
        return jwt.encode(body, key.private, algorithm=key.alg, headers=header)


class JwksServer:
    """A loopback HTTP server serving a keyring's JWKS, counting the fetches."""

    def __init__(self, keyring: JwtKeyring, *, host: str = "127.0.0.1") -> None:
        self.keyring = keyring
        self.host = host
        self.port = 0
        self.fetches = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        """The JWKS URL (``JWKS_URL``)."""
        return f"http://{self.host}:{self.port}{JWKS_PATH}"

    async def start(self) -> None:
        """Listen on a free port."""
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close open connections."""
        if self._server is not None:
            self._server.close()
            await asyncio.wait_for(self._server.wait_closed(), timeout=5)
            self._server = None

    async def __aenter__(self) -> JwksServer:
        await self.start()
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            method, path, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            if method == "GET" and path == JWKS_PATH:
                self.fetches += 1
                status, body = "200 OK", json.dumps(self.keyring.jwks()).encode()
            else:
                status, body = "404 Not Found", b'{"detail": "not found"}'
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await asyncio.wait_for(writer.drain(), timeout=5)
        except (TimeoutError, asyncio.IncompleteReadError, ValueError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), timeout=5)
