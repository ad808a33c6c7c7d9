"""The consumer loops' Prometheus metrics, created once per registry (one app, many loops)."""

from __future__ import annotations

import threading
import weakref
from typing import ClassVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ConsumerMetrics:
    """Lag, outcomes, dead letters, retries and commit failures, labelled by group."""

    _by_registry: ClassVar[weakref.WeakKeyDictionary[CollectorRegistry, ConsumerMetrics]] = (
        weakref.WeakKeyDictionary()
    )
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, registry: CollectorRegistry) -> None:
        # Gauges across workers (PROMETHEUS_MULTIPROC_DIR, agora_kit.metrics): a partition
        # moves between workers on a rebalance and the worker that lost it keeps its last
        # value on file, so the most recently written value is the current one.
        self.lag = Gauge(
            "agora_consumer_lag",
            "Messages not yet processed: end offset minus processed (or committed) offset.",
            ["group", "topic", "partition"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.processed = Counter(
            "agora_consumer_processed",
            "Messages finished by outcome (ok, skipped, retry_scheduled, dead_lettered).",
            ["group", "type", "outcome"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "agora_consumer_dead_letters",
            "Messages stored as dead letters, by error kind.",
            ["group", "kind"],
            registry=registry,
        )
        self.retries = Counter(
            "agora_consumer_retries",
            "Failed attempts that will be retried (in place or through the retry store).",
            ["group", "mode"],
            registry=registry,
        )
        self.retry_waiting = Gauge(
            "agora_consumer_retry_waiting",
            "Messages waiting in the retry store.",
            ["group"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.handler_seconds = Histogram(
            "agora_consumer_handler_duration_seconds",
            "Duration of handler calls.",
            ["group", "type"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=registry,
        )
        self.commit_failures = Counter(
            "agora_consumer_commit_failures",
            "Offset commits that failed (the messages are redelivered and deduplicated).",
            ["group", "reason"],
            registry=registry,
        )
        self.restarts = Counter(
            "agora_consumer_restarts",
            "Kafka consumer sessions restarted after an error.",
            ["group"],
            registry=registry,
        )
        self.stalled = Gauge(
            "agora_consumer_stalled",
            "1 while the stall detector sees lag without progress.",
            ["group"],
            registry=registry,
            # Any stalled worker stalls its partitions.
            multiprocess_mode="livemax",
        )

    @classmethod
    def for_registry(cls, registry: CollectorRegistry) -> ConsumerMetrics:
        """Return the metrics registered on ``registry``, creating them the first time."""
        with cls._lock:
            metrics = cls._by_registry.get(registry)
            if metrics is None:
                metrics = cls(registry)
                cls._by_registry[registry] = metrics
            return metrics
