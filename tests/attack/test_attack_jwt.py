"""JWT attacks through the gateway: every forged, misused or dead token gets the exact 401.

Each token is sent to one protected endpoint per service (``make attack-ci``) or to all seven
(``make attack``, ``AGORA_ATTACK_FULL=1``). The forged ones that carry a valid signature are
signed with the stack's own key, so only the check under test can refuse them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import httpx
import jwt
import pytest
from agora_deploy.testing import verify_address
from agora_kit.testing.mail import MailClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from .conftest import FULL, Account, Accounts, assert_problem

pytestmark = pytest.mark.attack

ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/v1/users/me", None),
    ("POST", "/api/v1/items", {"name": "Lamp", "price": "10"}),
    ("GET", "/api/v1/notifications", None),
]
if FULL:
    ENDPOINTS += [
        ("PATCH", "/api/v1/users/me", {"name": "Renamed"}),
        ("POST", "/api/v1/auth/logout", None),
        ("GET", "/api/v1/items/dead-letters", None),
        ("PUT", "/api/v1/notifications/preferences", {"item_mail": False}),
    ]

ALG = "The token's algorithm is not accepted."
NOT_ACCESS = "The token is not an access token."
UNKNOWN_KEY = "The token is signed with an unknown key."
INVALID = "The access token is invalid."


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _raw(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A JWS built by hand (PyJWT refuses to HMAC-sign with a public key, as it should)."""
    head = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{head}.{_b64(sign(head.encode()))}"


class Forge:
    """Builds each attack's token from a real one and the stack's key material."""

    def __init__(self, victim: Account, signing_key: tuple[str, bytes], jwks: dict[str, Any]):
        self.claims: dict[str, Any] = jwt.decode(victim.access, options={"verify_signature": False})
        self.header: dict[str, Any] = jwt.get_unverified_header(victim.access)
        self.kid, pem = signing_key
        self.key = serialization.load_pem_private_key(pem, password=None)
        self.jwk = next(k for k in jwks["keys"] if k["kid"] == self.kid)
        self.alg = str(self.header["alg"])

    def signed(self, header: dict[str, Any] | None = None, **claims: Any) -> str:
        """The victim's claims with ``claims`` changed, signed with the stack's key."""
        body = {k: v for k, v in {**self.claims, **claims}.items() if v is not None}
        head = {k: v for k, v in {**self.header, **(header or {})}.items() if v is not None}
        return jwt.encode(body, self.key, algorithm=self.alg, headers=head)  # type: ignore[arg-type]

    def hs256(self, secret: bytes) -> str:
        """HS/RS confusion: HMAC with public key material as the secret."""
        header = {"alg": "HS256", "typ": "at+jwt", "kid": self.kid}
        return _raw(header, self.claims, lambda m: hmac.new(secret, m, hashlib.sha256).digest())

    def foreign(self, **header: Any) -> str:
        """Signed with an attacker's Ed25519 key, headers as given."""
        key = ed25519.Ed25519PrivateKey.generate()
        head = {"typ": "at+jwt", **header}
        return jwt.encode(self.claims, key, algorithm="EdDSA", headers=head)

    def attacker_jwk(self) -> dict[str, Any]:
        """The public JWK of an attacker's key."""
        key = ed25519.Ed25519PrivateKey.generate().public_key()
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": _b64(raw)}


def _one_time_token(mail: MailClient, email: str, subject: str) -> str:
    message = mail.wait_subject(email, subject)
    text = str(mail.message(str(message["ID"]))["Text"])
    found = re.search(r"[?&]token=([^\s&\"'<>]+)", text)
    assert found, text
    return unquote(found.group(1))


@pytest.fixture(scope="module")
def tokens(
    accounts: Accounts,
    gateway_client: httpx.Client,
    mail: MailClient,
    signing_key: tuple[str, bytes],
    secrets: set[str],
) -> dict[str, tuple[str, str]]:
    """Attack name -> (token, the exact 401 detail it must get)."""
    victim = accounts.new()
    jwks = gateway_client.get("/.well-known/jwks.json")
    assert jwks.status_code == 200, jwks.text
    forge = Forge(victim, signing_key, jwks.json())
    verification = _one_time_token(mail, victim.email, "confirm your email")
    verify_address(gateway_client, mail, victim.email)
    asked = gateway_client.post("/api/v1/auth/password-reset", json={"email": victim.email})
    assert asked.status_code == 202, asked.text
    reset = _one_time_token(mail, victim.email, "reset")
    logged_out = accounts.new()
    bye = gateway_client.post("/api/v1/auth/logout", headers=logged_out.auth)
    assert bye.status_code == 204, bye.text
    public_pem = forge.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(time.time())
    other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    head, _body, sig = victim.access.split(".")
    claims = {**forge.claims, "roles": ["admin"]}
    tampered = f"{head}.{_b64(json.dumps(claims).encode())}.{sig}"
    table: dict[str, tuple[str, str]] = {
        "alg none": (_raw({**forge.header, "alg": "none"}, forge.claims, lambda m: b""), ALG),
        "HS256 keyed with the JWK's x": (forge.hs256(str(forge.jwk["x"]).encode()), ALG),
        "HS256 keyed with the public PEM": (forge.hs256(public_pem), ALG),
        "RS256 on the stack's key id": (
            jwt.encode(
                forge.claims, other_rsa, algorithm="RS256", headers={**forge.header, "alg": "RS256"}
            ),
            "The token's algorithm does not match its key.",
        ),
        "foreign kid": (forge.foreign(kid="attacker-key"), UNKNOWN_KEY),
        "embedded jwk, our kid": (forge.foreign(kid=forge.kid, jwk=forge.attacker_jwk()), INVALID),
        "jku to the attacker, our kid": (
            forge.foreign(kid=forge.kid, jku="http://evil.example/jwks.json"),
            INVALID,
        ),
        "payload changed, signature kept": (tampered, INVALID),
        "expired an hour ago": (
            forge.signed(iat=now - 7200, exp=now - 3600),
            "The access token has expired.",
        ),
        "wrong aud": (forge.signed(aud="someone-else"), INVALID),
        "wrong iss": (forge.signed(iss="https://evil.example"), INVALID),
        "no exp": (forge.signed(exp=None), INVALID),
        "typ JWT": (forge.signed(header={"typ": "JWT"}), NOT_ACCESS),
        "no typ": (forge.signed(header={"typ": None}), NOT_ACCESS),
        "sub 0": (forge.signed(sub="0"), "The token's subject is not a user id."),
        "verification token": (verification, NOT_ACCESS),
        "password-reset token": (reset, NOT_ACCESS),
        "refresh token": (victim.refresh, "The access token is malformed."),
        "access token after logout": (logged_out.access, "The access token has been revoked."),
    }
    secrets.update((verification, reset, tampered))
    return table


ATTACKS = [
    "alg none", "HS256 keyed with the JWK's x", "HS256 keyed with the public PEM",
    "RS256 on the stack's key id", "foreign kid", "embedded jwk, our kid",
    "jku to the attacker, our kid", "payload changed, signature kept", "expired an hour ago",
    "wrong aud", "wrong iss", "no exp", "typ JWT", "no typ", "sub 0", "verification token",
    "password-reset token", "refresh token", "access token after logout",
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "body"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in ENDPOINTS]
)
@pytest.mark.parametrize("attack", ATTACKS)
def test_a_bad_token_gets_401(
    gateway_client: httpx.Client,
    tokens: dict[str, tuple[str, str]],
    attack: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    token, detail = tokens[attack]
    headers = {"Authorization": f"Bearer {token}"}
    response = gateway_client.request(method, path, json=body, headers=headers)
    assert_problem(response, 401, detail=detail)
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


def test_a_reused_refresh_token_revokes_its_family(
    accounts: Accounts, gateway_client: httpx.Client, secrets: set[str]
) -> None:
    user = accounts.new()
    rotated = gateway_client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh})
    assert rotated.status_code == 200, rotated.text
    pair = rotated.json()
    secrets.update((pair["access_token"], pair["refresh_token"]))
    replay = gateway_client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh})
    assert (replay.status_code, replay.json()["error"]) == (400, "invalid_grant"), replay.text
    # The replay revoked the whole family: the rotated pair is dead too.
    after = gateway_client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert (after.status_code, after.json()["error"]) == (400, "invalid_grant"), after.text
    me = gateway_client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {pair['access_token']}"}
    )
    assert_problem(me, 401, detail="The access token has been revoked.")
