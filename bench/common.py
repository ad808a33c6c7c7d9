"""What every part of the bench shares: the options of one run, the paths, the console."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
DOC = REPO / "docs" / "performance.md"
#: High enough that the gateway's per-IP rate limit never answers 429 to the load generator.
GATEWAY_RATE = "1000000"
#: The notifier's per-recipient throttle, raised so one account can receive every email.
THROTTLE = "1000000"
#: The variables that point `agora up` at external services (ignored here).
EXTERNAL = frozenset(
    {"DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "SMTP_URL", "MAIL_API_URL"}
)
BARE_DATABASE = "bench_bare"
PEER_DATABASE = "bench_peer_outbox"
RAW_TOPIC = "bench.raw-latency"
#: What ``--only`` can pick; the default run measures all of them.
SCENARIOS = ("throughput", "latency", "relay", "notifier", "startup", "scaling")
#: Wide enough for the table when the output is not a terminal (make bench | tee ...).
console = Console(width=None if sys.stdout.isatty() else 140)


@dataclass(frozen=True)
class Options:
    """What one run measures, and its bounds."""

    seconds: float
    warmup_seconds: float
    connections: int
    threads: int
    rounds: int
    writes: int
    rate: float
    smtp_pool: int
    out: Path
    doc: Path | None
    only: frozenset[str] = frozenset(SCENARIOS)
    relay_rows: int = 20_000
    emails: int = 500
    workers: int = 2
    #: An interpreter with faststream-outbox, for the relay's peer row ("" skips it).
    peer_outbox: str = ""
    peer_rows: int = 5_000


def div(a: float, b: float) -> float | None:
    """``a / b``, or None when either is NaN or ``b`` is 0."""
    return None if math.isnan(a) or math.isnan(b) or b == 0 else a / b
