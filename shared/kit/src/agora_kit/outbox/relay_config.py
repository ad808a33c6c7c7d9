"""The relay's tunables and its metrics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from agora_kit.settings import ServiceSettings


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """The relay's tunables (``from_settings`` reads them from a service's settings)."""

    batch_size: int = 1000
    poll_interval_s: float = 1.0
    #: How often a standby retries the lock (jittered).
    standby_interval_s: float = 2.0
    #: Bound on one ``send()`` (it waits when the producer's buffer is full).
    send_timeout_s: float = 10.0
    #: Bound on awaiting a batch's acks; beyond it the producer is considered wedged.
    ack_timeout_s: float = 25.0
    producer_start_timeout_s: float = 10.0
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 10.0
    retention: timedelta = timedelta(days=7)
    delete_after: timedelta = timedelta(days=30)
    retention_interval_s: float = 300.0
    #: Per retention pass, at most this many batches of 1,000 rows (keeps a pass short).
    retention_max_batches: int = 20
    metrics_interval_s: float = 1.0
    stop_timeout_s: float = 10.0
    #: ``is_alive`` turns False when the loop made no progress for this long; None derives
    #: it from the other bounds, so a long Kafka timeout never reads as a wedged relay.
    stall_after_s: float | None = None

    def stall_limit_s(self) -> float:
        """Return how long the loop may go without a heartbeat before it counts as wedged."""
        if self.stall_after_s is not None:
            return self.stall_after_s
        # One pass at worst: producer start + one send timeout + the ack wait + a backoff,
        # plus a margin for the (statement-timeout bounded) database queries.
        one_pass = (
            self.producer_start_timeout_s
            + self.send_timeout_s
            + self.ack_timeout_s
            + max(self.backoff_max_s, self.poll_interval_s, self.standby_interval_s * 1.2)
        )
        return 2 * one_pass + 60.0

    @classmethod
    def from_settings(cls, settings: ServiceSettings, **overrides: Any) -> RelayConfig:
        """Derive the tunables from the service settings (timeouts follow Kafka's)."""
        request_s = settings.kafka_request_timeout_ms / 1000
        values: dict[str, Any] = {
            "batch_size": settings.relay_batch_size,
            "poll_interval_s": settings.relay_poll_interval_s,
            "send_timeout_s": request_s,
            "ack_timeout_s": request_s * 2 + 5,
            "producer_start_timeout_s": request_s,
            "retention": timedelta(days=settings.outbox_retention_days),
            "delete_after": timedelta(
                days=max(settings.outbox_delete_after_days, settings.outbox_retention_days)
            ),
            "stop_timeout_s": settings.shutdown_timeout_s,
        }
        values.update(overrides)
        return cls(**values)


class RelayMetrics:
    """The relay's gauges and counters (backlog, oldest age, publish latency, leadership)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        # Across workers (PROMETHEUS_MULTIPROC_DIR): only the leader measures the backlog,
        # and a former leader keeps its last value on file, so the most recent value wins;
        # the leaders add up (1 per service).
        self.backlog = Gauge(
            "agora_outbox_backlog",
            "Outbox rows not yet published.",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.oldest_age = Gauge(
            "agora_outbox_oldest_pending_age_seconds",
            "Age of the oldest unpublished outbox row (0 when none).",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.published = Counter(
            "agora_outbox_published", "Outbox rows published and acknowledged.", registry=registry
        )
        self.errors = Counter(
            "agora_outbox_publish_errors", "Failed outbox publish attempts.", registry=registry
        )
        self.active = Gauge(
            "agora_relay_active",
            "1 while this relay holds the outbox lock.",
            registry=registry,
            multiprocess_mode="livesum",
        )
