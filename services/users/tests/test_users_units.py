"""Unit tests (no network): input rules, key sets and rotation, token kinds, settings."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from agora_kit.settings import Environment
from agora_users.config import KeyAlgorithm, UsersSettings
from agora_users.exceptions import InvalidOneTimeToken
from agora_users.keys import (
    MANIFEST,
    KeySetError,
    ensure_folder,
    load_folder,
    public_jwk,
    rotate_folder,
    thumbprint,
)
from agora_users.keystore import KeyStore, key_lifetime
from agora_users.models import TokenPurpose
from agora_users.passwords import Passwords
from agora_users.schemas import NAME_PATTERN, clean_name, normalise_email
from agora_users.tokens import TokenSigner
from pydantic import ValidationError


def _settings(tmp_path: Path, **overrides: object) -> UsersSettings:
    values: dict[str, object] = {"env": Environment.DEVELOPMENT, "keys_dir": tmp_path / "keys"}
    values.update(overrides)
    return UsersSettings.model_validate(values)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Ada.Lovelace@Example.COM", "ada.lovelace@example.com"),
        ("  bob@example.org", None),
        ("Zoe@Exämple.de", "zoe@xn--exmple-cua.de"),
        ("zoë@exämple.de", None),
    ],
)
def test_emails_are_normalised(raw: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(ValueError, match=r"not a valid email|must be ASCII"):
            normalise_email(raw)
    else:
        assert normalise_email(raw) == expected


def test_names_are_trimmed_and_refuse_control_characters() -> None:
    assert clean_name("  Ada  ") == "Ada"
    assert clean_name("Cafe\u0301") == "Café"  # NFC
    assert clean_name("👨\u200d👩\u200d👧 family") == "👨\u200d👩\u200d👧 family"  # ZWJ is fine
    for bad in ("a\tb", "a\x00b", "a\u2029b", "evil\u202egnp.exe", "a\x7fb"):
        with pytest.raises(ValueError, match="control or line-separator"):
            clean_name(bad)
    with pytest.raises(ValueError, match="longer than 100"):
        clean_name("x" * 101)


def test_thumbprint_is_the_rfc_7638_example() -> None:
    # RFC 7638 §3.1's RSA example key and its thumbprint.
    jwk = {
        "kty": "RSA",
        "e": "AQAB",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6t"
        "Soc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQ"
        "R0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWh"
        "AI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    }
    assert thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_rotation_keeps_the_old_key_until_its_tokens_expire(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    assert ensure_folder(folder, KeyAlgorithm.EDDSA) is True
    assert ensure_folder(folder, KeyAlgorithm.EDDSA) is False
    first = load_folder(folder).active
    assert first.kid == thumbprint(public_jwk(first.private_key))

    second = rotate_folder(folder, KeyAlgorithm.EDDSA, keep_for=timedelta(minutes=15))
    keyset = load_folder(folder)
    assert keyset.active.kid == second
    assert [k.kid for k in keyset.usable()] == [second, first.kid]
    retired = keyset.keys[first.kid]
    assert retired.not_after is not None
    assert retired.not_after > datetime.now(UTC) + timedelta(minutes=14)

    # Past its not_after a key no longer verifies, and the next rotation deletes it.
    manifest = json.loads((folder / MANIFEST).read_text())
    for entry in manifest["keys"]:
        if entry["kid"] == first.kid:
            entry["not_after"] = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    (folder / MANIFEST).write_text(json.dumps(manifest))
    keyset = load_folder(folder)
    assert keyset.get(first.kid) is None
    assert [k["kid"] for k in keyset.jwks()["keys"]] == [second]
    third = rotate_folder(folder, KeyAlgorithm.EDDSA, keep_for=timedelta(minutes=15))
    keyset = load_folder(folder)
    assert first.kid not in keyset.keys
    assert not (folder / f"{first.kid}.pem").exists()
    assert [k.kid for k in keyset.usable()] == [third, second]

    # keep_for=0 is the emergency rotation: the old key stops verifying at once.
    fourth = rotate_folder(folder, KeyAlgorithm.EDDSA, keep_for=timedelta(0))
    assert [k.kid for k in load_folder(folder).usable()] == [fourth, second]


def test_key_store_reloads_a_rotated_set_and_survives_a_broken_one(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    store = KeyStore.from_settings(settings)
    before = store.keyset.active.kid
    assert store.reload_if_changed() is False
    kid = rotate_folder(tmp_path / "keys", KeyAlgorithm.EDDSA, keep_for=key_lifetime(settings))
    assert store.reload_if_changed() is True
    assert store.keyset.active.kid == kid
    assert before in {k["kid"] for k in store.jwks()["keys"]}

    (tmp_path / "keys" / MANIFEST).write_text("{not json")
    assert store.reload_if_changed() is False
    assert store.keyset.active.kid == kid


def test_keys_from_a_setting(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    ensure_folder(folder, KeyAlgorithm.EDDSA)
    manifest = json.loads((folder / MANIFEST).read_text())
    for entry in manifest["keys"]:
        entry["private_key"] = (folder / entry.pop("file")).read_text()
    settings = UsersSettings.model_validate(
        {"env": Environment.PRODUCTION, "signing_keys": json.dumps(manifest)}
    )
    store = KeyStore.from_settings(settings)
    assert store.keyset.active.kid == manifest["active"]
    assert settings.key_folder is None


def test_production_refuses_to_generate_keys(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="USERS_KEYS_DIR or USERS_SIGNING_KEYS"):
        UsersSettings.model_validate({"env": Environment.PRODUCTION})
    settings = UsersSettings.model_validate(
        {"env": Environment.PRODUCTION, "keys_dir": tmp_path / "empty"}
    )
    with pytest.raises(KeySetError, match="agora keys rotate"):
        KeyStore.from_settings(settings)


def test_argon2_parameters_have_a_floor() -> None:
    with pytest.raises(ValidationError):
        UsersSettings.model_validate({"argon2_memory_kib": 4096})
    with pytest.raises(ValidationError):
        UsersSettings.model_validate({"argon2_time_cost": 1})


def test_one_time_tokens_are_typed_and_never_cross_over(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    signer = TokenSigner(KeyStore.from_settings(settings), settings)
    verify = signer.one_time_token(purpose=TokenPurpose.VERIFY_EMAIL, user_id=7, ttl_s=600)
    reset = signer.one_time_token(purpose=TokenPurpose.PASSWORD_RESET, user_id=7, ttl_s=600)
    assert jwt.get_unverified_header(verify.token)["typ"] == "verify-email+jwt"
    assert signer.decode_one_time(verify.token, TokenPurpose.VERIFY_EMAIL).user_id == 7
    assert str(signer.decode_one_time(reset.token, TokenPurpose.PASSWORD_RESET).jti) == reset.jti

    access = signer.access_token(user_id=7, roles=["admin"], email_verified=True)
    with pytest.raises(InvalidOneTimeToken):
        signer.decode_one_time(verify.token, TokenPurpose.PASSWORD_RESET)
    with pytest.raises(InvalidOneTimeToken):
        signer.decode_one_time(access.token, TokenPurpose.VERIFY_EMAIL)
    tampered = verify.token[:-4] + ("AAAA" if not verify.token.endswith("AAAA") else "BBBB")
    with pytest.raises(InvalidOneTimeToken):
        signer.decode_one_time(tampered, TokenPurpose.VERIFY_EMAIL)
    # One-time tokens do not carry the access tokens' audience.
    claims = jwt.decode(verify.token, options={"verify_signature": False})
    assert claims["aud"] == "agora-users"
    assert claims["exp"] <= int(time.time()) + 600


def test_expired_one_time_token_is_refused(tmp_path: Path) -> None:
    settings = _settings(tmp_path, jwt_leeway_s=0)
    signer = TokenSigner(KeyStore.from_settings(settings), settings)
    issued = signer.one_time_token(purpose=TokenPurpose.VERIFY_EMAIL, user_id=1, ttl_s=-1)
    with pytest.raises(InvalidOneTimeToken):
        signer.decode_one_time(issued.token, TokenPurpose.VERIFY_EMAIL)


@pytest.mark.asyncio(loop_scope="session")
async def test_passwords_hash_verify_and_rehash() -> None:
    strong = Passwords(memory_kib=19_456, time_cost=2, parallelism=1)
    hashed = await strong.hash("a secret phrase")
    assert hashed.startswith("$argon2id$")
    assert await strong.verify(hashed, "a secret phrase") is True
    assert await strong.verify(hashed, "another phrase") is False
    assert await strong.verify("not a hash", "a secret phrase") is False
    assert strong.needs_rehash(hashed) is False
    stronger = Passwords(memory_kib=32_768, time_cost=3, parallelism=1)
    assert stronger.needs_rehash(hashed) is True
    await strong.burn("anything")


def test_the_published_name_pattern_accepts_exactly_what_clean_name_accepts() -> None:
    # schemathesis sent names with a backspace: the document allowed them (docs/security.md).
    pattern = re.compile(NAME_PATTERN[1:-1])
    samples = [chr(c) for c in range(0x3100)] + [chr(c) for c in range(0xFE00, 0xFFFE)]
    samples += ["Ann", " Ann ", "   ", "\u3000", "Eve\u2028", "a\u202eb", "Zo\u00eb"]
    for sample in samples:
        try:
            clean_name(sample)
            accepted = True
        except ValueError:
            accepted = False
        assert accepted is bool(pattern.fullmatch(sample)), repr(sample)
