"""Settings of the users service: the kit's shared settings plus ``USERS_*`` ones."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Self

from agora_kit.settings import ServiceSettings
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict


class KeyAlgorithm(StrEnum):
    """The signature algorithms new signing keys can use (docs/interfaces.md, Tokens)."""

    EDDSA = "EdDSA"
    RS256 = "RS256"


class UsersSettings(ServiceSettings):
    """The users service's settings; shared infrastructure URLs come without a prefix."""

    model_config = SettingsConfigDict(
        env_prefix="USERS_", extra="ignore", frozen=True, populate_by_name=True
    )

    service_name: str = "users"
    #: The ``.agora/`` state folder; development keys live in ``$AGORA_HOME/keys``.
    agora_home: Path | None = Field(default=None, validation_alias="AGORA_HOME")

    access_token_ttl_s: int = Field(default=900, ge=60, le=86_400)
    refresh_token_ttl_s: int = Field(default=30 * 86_400, ge=300)
    verification_token_ttl_s: int = Field(default=2 * 86_400, ge=300)
    reset_token_ttl_s: int = Field(default=3600, ge=300, le=86_400)

    #: Folder of the signing keys (manifest + PEM files). Defaults to ``$AGORA_HOME/keys`` in
    #: development; outside it, set this (a mounted secret) or ``signing_keys``.
    keys_dir: Path | None = None
    #: The key set as JSON (the manifest format with inline ``private_key`` PEMs), for
    #: deployments that pass secrets as environment variables. Wins over ``keys_dir``.
    signing_keys: SecretStr | None = None
    key_algorithm: KeyAlgorithm = KeyAlgorithm.EDDSA
    #: How often the running service looks for a rotated key set on disk.
    key_reload_interval_s: float = Field(default=2.0, gt=0, le=300)

    # argon2id; the floor is OWASP's minimum (19 MiB, 2 iterations, 1 lane).
    argon2_memory_kib: int = Field(default=19_456, ge=19_456)
    argon2_time_cost: int = Field(default=2, ge=2)
    argon2_parallelism: int = Field(default=1, ge=1, le=16)
    #: Concurrent hashes (each holds ``argon2_memory_kib`` of memory while it runs).
    argon2_max_concurrency: int = Field(default=4, ge=1, le=64)

    #: Failed logins inside the window before 429: per (account, client address), per client
    #: address across accounts, and per account from addresses it has not signed in from.
    login_max_failures_per_email_client: int = Field(default=5, ge=1)
    login_max_failures_per_client: int = Field(default=20, ge=1)
    login_max_failures_per_email: int = Field(default=50, ge=1)
    #: How long an address the owner signed in from skips the per-account limit.
    login_known_client_days: int = Field(default=30, ge=1)
    login_failure_window_s: int = Field(default=900, ge=1)

    #: Reset mails per address per window (beyond it the request is answered but not sent).
    reset_max_per_email: int = Field(default=3, ge=1)
    #: Reset requests per client per window (beyond it: 429).
    reset_max_per_client: int = Field(default=10, ge=1)
    reset_window_s: int = Field(default=3600, ge=1)

    @model_validator(mode="after")
    def _keys_source_outside_development(self) -> Self:
        if not self.is_development and self.keys_dir is None and self.signing_keys is None:
            raise ValueError(
                "set USERS_KEYS_DIR or USERS_SIGNING_KEYS outside AGORA_ENV=development: "
                "signing keys are generated automatically in development only"
            )
        return self

    @property
    def key_folder(self) -> Path | None:
        """Where the key set lives on disk (None when it comes from ``signing_keys``)."""
        if self.signing_keys is not None:
            return None
        if self.keys_dir is not None:
            return self.keys_dir
        home = self.agora_home or Path(os.getcwd()) / ".agora"
        return home / "keys"

    @property
    def one_time_audience(self) -> str:
        """The ``aud`` of verification and reset tokens: only this service accepts them."""
        return self.jwt_issuer
