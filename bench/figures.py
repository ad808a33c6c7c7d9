"""The table's rows: one per scenario, built from wrk rounds, latency samples or rates."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # mypy names files by package path from the repo root (explicit_package_bases); run as a
    # script, this folder is on sys.path and each module here is a top-level one.
    from bench import openloop, wrk
else:
    import openloop
    import wrk


@dataclass
class Rate:
    """``count`` units done in ``seconds``."""

    count: int
    seconds: float
    errors: int = 0
    client_cpu_s: float = 0.0

    @property
    def per_s(self) -> float:
        """Units per second."""
        return self.count / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class Row:
    """One line of the table."""

    name: str
    what: str
    n: int
    errors: int
    rps: float | None
    p50_ms: float
    p99_ms: float
    ratio: float | None
    ratio_of: str
    goal: str
    client_cpu: float | None
    rounds: list[float] = field(default_factory=list)

    def met(self) -> bool | None:
        """Whether the row meets its goal (None without one)."""
        if not self.goal or self.ratio is None:
            return None
        sign = self.goal[:2] if self.goal[1] == "=" else self.goal[:1]
        value = float(self.goal[len(sign) :].rstrip("x"))
        return {">=": self.ratio >= value, "<=": self.ratio <= value, ">": self.ratio > value}[sign]


def wrk_row(name: str, what: str, parts: list[wrk.WrkRound]) -> Row:
    """Medians of a load's rounds."""
    return Row(
        name=name,
        what=what,
        n=sum(p.requests for p in parts),
        errors=sum(p.errors for p in parts),
        rps=statistics.median(p.rps for p in parts),
        p50_ms=statistics.median(p.p50_ms for p in parts),
        p99_ms=statistics.median(p.p99_ms for p in parts),
        ratio=None,
        ratio_of="",
        goal="",
        client_cpu=sum(p.client_cpu_s for p in parts) / sum(p.seconds for p in parts),
        rounds=[round(p.rps, 1) for p in parts],
    )


def paired_ratio(a: list[wrk.WrkRound], b: list[wrk.WrkRound]) -> float:
    """The median over rounds of ``a``'s throughput over ``b``'s in the same round."""
    return statistics.median(x.rps / y.rps for x, y in zip(a, b, strict=True) if y.rps > 0)


def latency_row(name: str, what: str, lat: openloop.Latency) -> Row:
    """An open-loop latency scenario."""
    return Row(
        name=name,
        what=what,
        n=len(lat.samples_ms),
        errors=lat.errors,
        rps=None,
        p50_ms=lat.pct(0.5),
        p99_ms=lat.pct(0.99),
        ratio=None,
        ratio_of="",
        goal="",
        client_cpu=lat.client_cpu_s / lat.seconds if lat.seconds else None,
    )


def rate_row(name: str, what: str, rate: Rate) -> Row:
    """A count-over-time scenario (relay, notifier): its rate in the req/s column."""
    return Row(
        name=name, what=what, n=rate.count, errors=rate.errors, rps=rate.per_s,
        p50_ms=math.nan, p99_ms=math.nan, ratio=None, ratio_of="", goal="",
        client_cpu=rate.client_cpu_s / rate.seconds if rate.client_cpu_s else None,
    )  # fmt: skip
