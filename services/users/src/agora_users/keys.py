"""Signing keys: a key set on disk (or in a setting), rotation, and the public JWKS.

On disk a key set is a folder with ``keys.json`` (the manifest) and one PKCS#8 PEM file per
key. The manifest names the active key (the one that signs) and, for each retired key, the
instant after which every token it signed has expired (``not_after``); until then it stays
in the JWKS. Writers take an exclusive ``flock`` and replace the manifest atomically, so
several workers starting at once, and a rotation while the service runs, are safe.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from agora_users.config import KeyAlgorithm

logger = logging.getLogger("agora.users.keys")

MANIFEST = "keys.json"
_LOCK = ".keys.lock"
_RSA_BITS = 3072

PrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


class KeySetError(RuntimeError):
    """The key set is missing or unreadable."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")


def public_jwk(key: PrivateKey) -> dict[str, str]:
    """Return the public JWK members of ``key`` (without kid, use, alg)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return {"kty": "OKP", "crv": "Ed25519", "x": _b64(raw)}
    numbers = key.public_key().public_numbers()
    return {"kty": "RSA", "n": _b64(_int_bytes(numbers.n)), "e": _b64(_int_bytes(numbers.e))}


def thumbprint(jwk: Mapping[str, str]) -> str:
    """Return the RFC 7638 thumbprint of a public JWK: a stable, collision-free ``kid``."""
    members = ("crv", "kty", "x") if jwk["kty"] == "OKP" else ("e", "kty", "n")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(canonical.encode()).digest())


def generate_key(algorithm: KeyAlgorithm) -> PrivateKey:
    """Generate a new private key for ``algorithm``."""
    if algorithm is KeyAlgorithm.EDDSA:
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS)


def _pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_pem(data: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
        raise KeySetError(f"unsupported key type {type(key).__name__}: use Ed25519 or RSA")
    return key


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One key of the set."""

    kid: str
    algorithm: KeyAlgorithm
    private_key: PrivateKey
    #: After this instant no token it signed is still valid (None: the active key).
    not_after: datetime | None

    def jwk(self) -> dict[str, str]:
        """Return the key's public JWK."""
        jwk = public_jwk(self.private_key)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.algorithm.value}


@dataclass(frozen=True, slots=True)
class KeySet:
    """The keys a service holds: the active one signs, all unexpired ones verify."""

    active: SigningKey
    keys: Mapping[str, SigningKey]

    def usable(self, now: datetime | None = None) -> list[SigningKey]:
        """Return the keys whose tokens may still be valid, active key first."""
        now = now or datetime.now(UTC)
        rest = [
            k
            for k in self.keys.values()
            if k.kid != self.active.kid and (k.not_after is None or k.not_after > now)
        ]
        return [self.active, *rest]

    def get(self, kid: str) -> SigningKey | None:
        """Return the unexpired key ``kid``, if any."""
        return next((k for k in self.usable() if k.kid == kid), None)

    def jwks(self) -> dict[str, Any]:
        """Return the public JWKS document."""
        return {"keys": [k.jwk() for k in self.usable()]}


def _parse_time(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def parse_manifest(document: Mapping[str, Any], *, folder: Path | None) -> KeySet:
    """Build a KeySet from a manifest; keys are PEM files in ``folder`` or inline PEMs."""
    try:
        keys: dict[str, SigningKey] = {}
        for entry in document["keys"]:
            if "private_key" in entry:
                pem = str(entry["private_key"]).encode()
            elif folder is not None:
                pem = (folder / Path(str(entry["file"])).name).read_bytes()
            else:
                raise KeySetError(f"key {entry.get('kid')!r} has no private_key")
            key = SigningKey(
                kid=str(entry["kid"]),
                algorithm=KeyAlgorithm(entry.get("alg", KeyAlgorithm.EDDSA.value)),
                private_key=_load_pem(pem),
                not_after=_parse_time(entry.get("not_after")),
            )
            keys[key.kid] = key
        active = keys[str(document["active"])]
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise KeySetError(f"unreadable key set: {type(exc).__name__}: {exc}") from exc
    return KeySet(active=active, keys=keys)


def load_folder(folder: Path) -> KeySet:
    """Read the key set in ``folder``."""
    path = folder / MANIFEST
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise KeySetError(f"no key set at {path}: run `agora keys rotate` to create one") from exc
    except (OSError, ValueError) as exc:
        raise KeySetError(f"unreadable key manifest {path}: {exc}") from exc
    return parse_manifest(document, folder=folder)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(folder / _LOCK, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _add_key(folder: Path, manifest: dict[str, Any], algorithm: KeyAlgorithm) -> str:
    key = generate_key(algorithm)
    kid = thumbprint(public_jwk(key))
    _write_atomic(folder / f"{kid}.pem", _pem(key), 0o600)
    entry = {
        "kid": kid,
        "alg": algorithm.value,
        "file": f"{kid}.pem",
        "created_at": datetime.now(UTC).isoformat(),
        "not_after": None,
    }
    manifest["keys"].append(entry)
    manifest["active"] = kid
    return kid


def _write_manifest(folder: Path, manifest: Mapping[str, Any]) -> None:
    _write_atomic(folder / MANIFEST, json.dumps(manifest, indent=2).encode(), 0o600)


def ensure_folder(folder: Path, algorithm: KeyAlgorithm) -> bool:
    """Create a key set with one key in ``folder`` unless it has one; return True if created."""
    with _locked(folder):
        if (folder / MANIFEST).exists():
            return False
        manifest: dict[str, Any] = {"version": 1, "active": None, "keys": []}
        kid = _add_key(folder, manifest, algorithm)
        _write_manifest(folder, manifest)
    logger.info("signing key created", extra={"kid": kid, "folder": str(folder)})
    return True


def rotate_folder(folder: Path, algorithm: KeyAlgorithm, *, keep_for: timedelta) -> str:
    """Add a key and make it sign; the old one verifies for ``keep_for``. Return the new kid."""
    with _locked(folder):
        path = folder / MANIFEST
        if path.exists():
            manifest: dict[str, Any] = json.loads(path.read_text())
        else:
            manifest = {"version": 1, "active": None, "keys": []}
        now = datetime.now(UTC)
        for entry in manifest["keys"]:
            if entry["kid"] == manifest["active"] and entry.get("not_after") is None:
                entry["not_after"] = (now + keep_for).isoformat()
        kid = _add_key(folder, manifest, algorithm)
        # Keys whose last token has expired are dropped (their files too).
        expired = [
            e for e in manifest["keys"] if (t := _parse_time(e.get("not_after"))) and t <= now
        ]
        manifest["keys"] = [e for e in manifest["keys"] if e not in expired]
        _write_manifest(folder, manifest)
        for entry in expired:
            with contextlib.suppress(FileNotFoundError):
                (folder / Path(str(entry["file"])).name).unlink()
    return kid
