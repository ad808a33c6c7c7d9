"""The settings base every service extends: one pydantic-settings class per service."""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Values that must never reach production as secrets.
INSECURE_SECRETS = frozenset({"", "changeme", "change-me", "secret", "development", "dev"})


class Environment(StrEnum):
    """Where a service runs; insecure defaults are only accepted in development."""

    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class ServiceSettings(BaseSettings):
    """Settings shared by every Agora service.

    Each service subclasses this with its own ``env_prefix`` for its own settings; the shared
    infrastructure URLs are read without a prefix (``DATABASE_URL``, ``REDIS_URL``, ...), the
    names the launcher and docker-compose set (docs/interfaces.md, Environment variables).
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    service_name: str = "agora"
    env: Environment = Field(default=Environment.DEVELOPMENT, validation_alias="AGORA_ENV")

    database_url: str = Field(
        default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres",
        validation_alias="DATABASE_URL",
    )
    #: A fixed pool by default: overflow connections are closed on return, so under load they
    #: were opened and closed all the time. 15 covers the requests in flight of one worker plus
    #: its relay and consumer.
    db_pool_size: int = Field(default=15, ge=1, validation_alias="DB_POOL_SIZE")
    db_max_overflow: int = Field(default=0, ge=0, validation_alias="DB_MAX_OVERFLOW")
    db_pool_recycle_s: int = Field(default=1800, ge=30, validation_alias="DB_POOL_RECYCLE_S")
    db_connect_timeout_s: float = Field(default=5.0, gt=0, validation_alias="DB_CONNECT_TIMEOUT_S")
    db_statement_timeout_ms: int = Field(
        default=10_000, ge=100, validation_alias="DB_STATEMENT_TIMEOUT_MS"
    )

    redis_url: str = Field(default="redis://127.0.0.1:6379/0", validation_alias="REDIS_URL")
    #: Bound on connecting and on each command: Redis answers in well under a millisecond, so a
    #: second means it is frozen or gone, and the request gets 503 rather than waiting longer.
    redis_timeout_s: float = Field(default=1.0, gt=0, validation_alias="REDIS_TIMEOUT_S")

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", validation_alias="KAFKA_BOOTSTRAP_SERVERS"
    )
    #: On for Apache Kafka; the embedded broker (Tansu) rejects it, so the launcher sets it off.
    kafka_enable_idempotence: bool = Field(
        default=True, validation_alias="KAFKA_ENABLE_IDEMPOTENCE"
    )
    kafka_request_timeout_ms: int = Field(
        default=10_000, ge=1000, validation_alias="KAFKA_REQUEST_TIMEOUT_MS"
    )
    kafka_topic_partitions: int = Field(default=3, ge=1, validation_alias="KAFKA_TOPIC_PARTITIONS")
    kafka_replication_factor: int = Field(
        default=1, ge=1, validation_alias="KAFKA_REPLICATION_FACTOR"
    )

    jwks_url: str = Field(
        default="http://127.0.0.1:8001/.well-known/jwks.json", validation_alias="JWKS_URL"
    )
    jwt_issuer: str = Field(default="agora-users", validation_alias="JWT_ISSUER")
    jwt_audience: str = Field(default="agora", validation_alias="JWT_AUDIENCE")

    cors_origins: list[str] = Field(default_factory=list, validation_alias="CORS_ORIGINS")
    #: ``X-Process-Time`` hands clients a clean timing channel (account enumeration, login
    #: timing): off unless turned on, in development too (a development stack is reachable).
    process_time_header: bool = Field(default=False, validation_alias="PROCESS_TIME_HEADER")
    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")
    log_json: bool = Field(default=True, validation_alias="LOG_JSON")

    #: Sent in ``Retry-After`` when a dependency is down.
    retry_after_s: int = Field(default=5, ge=1, validation_alias="RETRY_AFTER_S")
    shutdown_timeout_s: float = Field(default=10.0, gt=0, validation_alias="SHUTDOWN_TIMEOUT_S")

    # --- part "http": HTTP conventions, auth, idempotency, health (agora_kit.app & co) ---
    http_timeout_s: float = Field(default=5.0, gt=0, validation_alias="HTTP_TIMEOUT_S")
    #: Request bodies above this size get 413 (the gateway enforces its own limit too).
    max_body_bytes: int = Field(default=1_048_576, ge=1024, validation_alias="MAX_BODY_BYTES")
    health_timeout_s: float = Field(default=2.0, gt=0, validation_alias="HEALTH_TIMEOUT_S")
    redis_retries: int = Field(default=3, ge=0, le=10, validation_alias="REDIS_RETRIES")
    redis_health_check_interval_s: int = Field(
        default=15, ge=1, validation_alias="REDIS_HEALTH_CHECK_INTERVAL_S"
    )
    jwt_leeway_s: int = Field(default=10, ge=0, le=120, validation_alias="JWT_LEEWAY_S")
    #: How long fetched keys are trusted before a background refresh drops removed ones.
    jwks_cache_ttl_s: float = Field(default=300.0, ge=1, validation_alias="JWKS_CACHE_TTL_S")
    #: An unknown ``kid`` triggers at most one JWKS refetch per this interval per kid.
    jwks_refetch_interval_s: float = Field(
        default=10.0, ge=0, validation_alias="JWKS_REFETCH_INTERVAL_S"
    )
    idempotency_ttl_s: int = Field(default=86_400, ge=60, validation_alias="IDEMPOTENCY_TTL_S")
    #: How long a "processing" claim lives: a crashed request frees its key after this.
    idempotency_lock_ttl_s: int = Field(default=10, ge=1, validation_alias="IDEMPOTENCY_LOCK_TTL_S")
    # --- end of part "http" ---

    # --- part "data": outbox relay and outbox retention (agora_kit.outbox.relay) ---
    #: Published outbox rows keep their payload this long (replay after a broker loss), then
    #: ``value`` and ``headers`` are scrubbed: they may hold personal data.
    outbox_retention_days: float = Field(
        default=7.0, gt=0, validation_alias="OUTBOX_RETENTION_DAYS"
    )
    #: Scrubbed rows (ids, topics, keys, times) are deleted after this many days.
    outbox_delete_after_days: float = Field(
        default=30.0, gt=0, validation_alias="OUTBOX_DELETE_AFTER_DAYS"
    )
    relay_batch_size: int = Field(
        default=1000, ge=1, le=10_000, validation_alias="RELAY_BATCH_SIZE"
    )
    #: The relay wakes on NOTIFY; this is the fallback poll when a notification is missed.
    relay_poll_interval_s: float = Field(
        default=1.0, gt=0, le=60, validation_alias="RELAY_POLL_INTERVAL_S"
    )
    # --- end of part "data" ---

    # --- part "consumer": consumer loops (agora_kit.consumer) ---
    #: Bound on one event handler call; a timeout counts as a transient failure.
    consumer_handler_timeout_s: float = Field(
        default=30.0, gt=0, validation_alias="CONSUMER_HANDLER_TIMEOUT_S"
    )
    #: Lag > 0 without progress for this long fails ``/health/live``.
    consumer_stall_timeout_s: float = Field(
        default=120.0, ge=10, validation_alias="CONSUMER_STALL_TIMEOUT_S"
    )
    #: Attempts of a failing event (independent policy) before it becomes a dead letter.
    consumer_max_attempts: int = Field(
        default=8, ge=1, le=100, validation_alias="CONSUMER_MAX_ATTEMPTS"
    )
    consumer_retry_base_delay_s: float = Field(
        default=1.0, gt=0, validation_alias="CONSUMER_RETRY_BASE_DELAY_S"
    )
    consumer_retry_max_delay_s: float = Field(
        default=300.0, gt=0, validation_alias="CONSUMER_RETRY_MAX_DELAY_S"
    )
    consumer_session_timeout_ms: int = Field(
        default=10_000, ge=3000, validation_alias="CONSUMER_SESSION_TIMEOUT_MS"
    )
    #: How long a fetch may wait for records: the most an idle consumer adds to an event's
    #: latency on a broker that answers only when the wait is over (the embedded one).
    consumer_fetch_max_wait_ms: int = Field(
        default=25, ge=1, le=10_000, validation_alias="CONSUMER_FETCH_MAX_WAIT_MS"
    )
    #: Keys of one partition handled at once; a key's events always keep their order.
    consumer_max_in_flight: int = Field(
        default=1, ge=1, le=64, validation_alias="CONSUMER_MAX_IN_FLIGHT"
    )
    # --- end of part "consumer" ---

    @property
    def is_development(self) -> bool:
        """Whether insecure development defaults are acceptable."""
        return self.env is Environment.DEVELOPMENT

    @property
    def show_process_time(self) -> bool:
        """Whether responses carry ``X-Process-Time`` (only if ``PROCESS_TIME_HEADER`` is on)."""
        return self.process_time_header

    def secret_fields(self) -> dict[str, SecretStr]:
        """Return every ``SecretStr`` setting by name (checked outside development)."""
        return {
            name: value
            for name in type(self).model_fields
            if isinstance(value := getattr(self, name), SecretStr)
        }

    @model_validator(mode="after")
    def _refuse_insecure_secrets(self) -> Self:
        if self.is_development:
            return self
        weak = [
            name
            for name, value in self.secret_fields().items()
            if value.get_secret_value().strip().lower() in INSECURE_SECRETS
            or len(value.get_secret_value()) < 16
        ]
        if weak:
            raise ValueError(
                f"insecure value for {', '.join(sorted(weak))}: set a real secret "
                f"(at least 16 characters) outside AGORA_ENV=development"
            )
        return self
