"""The consumer loop's failure policies and tunables."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from agora_kit.consumer.retry import Backoff
from agora_kit.settings import ServiceSettings


class FailurePolicy(StrEnum):
    """What a failing event does to the events behind it."""

    #: Retried through the retry store; the partition moves on (the notifier).
    INDEPENDENT = "independent"
    #: Retried in place; its partition waits, the others flow (projections).
    IN_ORDER = "in_order"


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """Tunables of one consumer loop (``from_settings`` reads the operator-facing ones)."""

    #: Independent policy (and replays): attempts in all before a dead letter "exhausted".
    max_attempts: int = 8
    #: In-order policy: attempts of a ``PermanentError`` before it is dead-lettered.
    permanent_attempts: int = 3
    #: In-order policy: transient attempts before "exhausted"; None retries until stopped.
    max_transient_attempts: int | None = None
    backoff: Backoff = field(default_factory=Backoff)
    #: Bound on one handler call; a timeout counts as a transient failure.
    handler_timeout_s: float = 30.0
    #: Lag > 0 without progress for this long makes ``is_alive`` False.
    stall_timeout_s: float = 120.0
    #: Dead-letter events of a known type that no handler takes (default: skip them).
    dead_letter_unhandled: bool = False

    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    #: Our fetch loop polls independently of handlers; this bounds the revoke callback.
    max_poll_interval_ms: int = 300_000
    fetch_max_wait_ms: int = 25
    request_timeout_ms: int = 10_000
    max_poll_records: int = 200
    #: Records held per partition before it is paused (backpressure).
    max_buffered: int = 500
    #: Keys of one partition handled at once (a key's records stay in offset order).
    max_in_flight: int = 1
    auto_offset_reset: str = "earliest"

    #: Commit a partition's progress at least this often while records keep coming.
    commit_interval_s: float = 1.0
    commit_every: int = 100
    #: How often lag is measured (and the stall detector runs).
    monitor_interval_s: float = 5.0
    retry_poll_interval_s: float = 1.0
    retry_batch_size: int = 20
    #: On revocation, how long a partition's in-flight handler may finish before cancel.
    revoke_grace_s: float = 10.0
    start_timeout_s: float = 30.0
    stop_timeout_s: float = 10.0
    #: Between Kafka sessions after a fatal consumer error.
    restart_backoff: Backoff = field(default_factory=lambda: Backoff(base_s=1.0, max_s=30.0))
    #: Between attempts to write a dead letter or retry row while the database is away.
    db_backoff: Backoff = field(default_factory=lambda: Backoff(base_s=0.2, max_s=10.0))

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.permanent_attempts < 1:
            raise ValueError("max_attempts and permanent_attempts must be at least 1")
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be at most a third of session_timeout_ms")
        # aiokafka issue #848: a member that leaves the group because one message took too
        # long rejoins and leaves again forever; keep the poll interval above any handler
        # and revocation.
        if self.max_poll_interval_ms <= (self.handler_timeout_s + self.revoke_grace_s) * 1000:
            raise ValueError("max_poll_interval_ms must exceed handler_timeout_s + revoke_grace_s")
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if self.stall_timeout_s <= self.monitor_interval_s:
            raise ValueError("stall_timeout_s must exceed monitor_interval_s")

    @property
    def retry_lease_s(self) -> float:
        """How long a claimed retry row stays hidden from other workers."""
        return self.handler_timeout_s * 2 + 30

    @property
    def rebalance_timeout_ms(self) -> int:
        """How long the group waits for us to rejoin (covers the revoke callback)."""
        return max(self.session_timeout_ms, int((self.revoke_grace_s + 10) * 1000))

    @property
    def client_request_timeout_ms(self) -> int:
        """The Kafka client's request timeout: a JoinGroup request waits out a whole rebalance.

        Below the rebalance timeout, a join that takes long (about 5 s on the embedded broker,
        up to the rebalance timeout on Kafka) times out and is retried forever.
        """
        return max(self.request_timeout_ms, self.rebalance_timeout_ms + 5000)

    @classmethod
    def from_settings(cls, settings: ServiceSettings, **overrides: Any) -> ConsumerConfig:
        """Build the config from the service settings, then apply ``overrides``."""
        values: dict[str, Any] = {
            "max_attempts": settings.consumer_max_attempts,
            "backoff": Backoff(
                base_s=settings.consumer_retry_base_delay_s,
                max_s=settings.consumer_retry_max_delay_s,
            ),
            "handler_timeout_s": settings.consumer_handler_timeout_s,
            "stall_timeout_s": settings.consumer_stall_timeout_s,
            "session_timeout_ms": settings.consumer_session_timeout_ms,
            "fetch_max_wait_ms": settings.consumer_fetch_max_wait_ms,
            "max_in_flight": settings.consumer_max_in_flight,
            "heartbeat_interval_ms": settings.consumer_session_timeout_ms // 3,
            "request_timeout_ms": settings.kafka_request_timeout_ms,
            "stop_timeout_s": settings.shutdown_timeout_s,
        }
        values.update(overrides)
        return cls(**values)
