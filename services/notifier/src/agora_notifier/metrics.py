"""The notifier's email counter: what came of each delivery attempt (dashboards and alerts)."""

from __future__ import annotations

from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter


class EmailOutcome(StrEnum):
    """The ``outcome`` label of ``agora_notifier_emails_total``."""

    SENT = "sent"  # the SMTP server accepted it (250)
    FAILED = "failed"  # the SMTP server refused it or could not be reached
    THROTTLED = "throttled"  # held back: too many emails to this recipient
    DEDUPLICATED = "deduplicated"  # a redelivered event whose email was already sent
    SKIPPED = "skipped"  # the recipient was deleted before it went


class EmailMetrics:
    """Counts email delivery attempts by outcome on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.emails = Counter(
            "agora_notifier_emails",
            "Email delivery attempts by outcome (sent, failed, throttled, deduplicated, skipped).",
            ["outcome"],
            registry=registry,
        )
        # Every outcome is present from the start, so rate() and alerts see a zero, not nothing.
        for outcome in EmailOutcome:
            self.emails.labels(outcome.value)

    def count(self, outcome: EmailOutcome) -> None:
        """Record one attempt's outcome."""
        self.emails.labels(outcome.value).inc()
