"""Start-up and memory: a timed `bring_up` against its slowest step, and each idle RSS."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psutil
from agora_deploy import up
from agora_deploy.infra import Infra
from agora_deploy.stack import ComponentInfo

if TYPE_CHECKING:
    # mypy names files by package path from the repo root (explicit_package_bases); run as a
    # script, this folder is on sys.path and each module here is a top-level one.
    from bench import common, figures
else:
    import common
    import figures

#: The idle RSS goal per service (issue 12).
RSS_GOAL_MB = 150.0
SERVICES = ("users", "items", "notifier")


# --- start-up -------------------------------------------------------------------------------


@dataclass
class StartTimes:
    """Seconds per step of one ``bring_up``, in the order they ran."""

    steps: dict[str, float] = field(default_factory=dict)
    total_s: float = 0.0

    def slowest(self) -> tuple[str, float]:
        """The slowest single component start (migrations and topic creation are not one)."""
        starts = {k: v for k, v in self.steps.items() if k.startswith("start ")}
        name = max(starts, key=lambda k: starts[k])
        return name, starts[name]


class TimedInfra(Infra):
    """An ``Infra`` that notes how long each backing service takes to start."""

    times: StartTimes

    def _timed(self, name: str, start: Callable[[], ComponentInfo]) -> ComponentInfo:
        began = time.perf_counter()
        try:
            return start()
        finally:
            self.times.steps[f"start {name}"] = time.perf_counter() - began

    def start_postgres(self) -> ComponentInfo:
        """Start PostgreSQL, timed."""
        return self._timed("postgres", super().start_postgres)

    def start_redis(self) -> ComponentInfo:
        """Start Redis, timed."""
        return self._timed("redis", super().start_redis)

    def start_kafka(self) -> ComponentInfo:
        """Start the broker (with its storage), timed."""
        return self._timed("kafka", super().start_kafka)

    def start_mail(self) -> ComponentInfo:
        """Start the mail sink, timed."""
        return self._timed("mail", super().start_mail)


@contextlib.contextmanager
def timed_bring_up(times: StartTimes) -> Iterator[None]:
    """Time every step ``agora_deploy.up.bring_up`` takes (it calls these module globals)."""
    originals = {
        name: getattr(up, name)
        for name in ("create_topics", "migrate", "start_service", "start_stack_gateway")
    }

    def wrap(name: str, label: Callable[..., str]) -> Callable[..., Any]:
        original = originals[name]

        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                times.steps[label(*args)] = time.perf_counter() - began

        return timed

    up.create_topics = wrap("create_topics", lambda *a: "create topics")
    up.migrate = wrap("migrate", lambda spec, *a: f"migrate {spec.name}")
    up.start_service = wrap("start_service", lambda infra, spec, *a: f"start {spec.name}")
    up.start_stack_gateway = wrap("start_stack_gateway", lambda *a: "start gateway")
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(up, name, original)


# --- memory ---------------------------------------------------------------------------------


def idle_rss_mb(infra: Infra, *, settle_s: float = 5.0) -> dict[str, float]:
    """Each service's RSS (its process tree, uvicorn's workers included), in MiB, at idle."""
    time.sleep(settle_s)  # the first seconds after ready still import and warm caches
    found: dict[str, float] = {}
    for name in SERVICES:
        info = infra.components.get(name)
        if info is None or info.pid is None:
            continue
        root = psutil.Process(info.pid)
        rss = 0
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                rss += proc.memory_info().rss
        found[name] = rss / 2**20
    return found


def startup_rows(times: StartTimes, rss: dict[str, float]) -> list[figures.Row]:
    """``agora up``'s cold start against its slowest component, and each idle RSS."""

    def single(name: str, what: str, seconds: float) -> figures.Row:
        ms = seconds * 1000
        return figures.Row(name=name, what=what, n=1, errors=0, rps=None, p50_ms=ms, p99_ms=ms,
                   ratio=None, ratio_of="", goal="", client_cpu=None)  # fmt: skip

    slow_name, slow_s = times.slowest()
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in times.steps.items())
    ref = single(f"slowest component: {slow_name.removeprefix('start ')}",
                 "its own start, timed inside the same bring_up", slow_s)  # fmt: skip
    ref.ratio, ref.ratio_of = 1.0, "reference"
    total = single("agora up, cold", f"the whole bring_up, fresh folders ({steps})",
                   times.total_s)  # fmt: skip
    total.ratio, total.ratio_of, total.goal = total_s_ratio(times), "time / slowest", "<=1.3x"
    rows = [ref, total]
    for name, mb in rss.items():
        row = single(f"{name} idle RSS {mb:.0f} MB", "its process tree, 5 s after the stack was "
                     "up, before any load", math.nan)  # fmt: skip
        row.n, row.p50_ms, row.p99_ms = 1, math.nan, math.nan
        row.ratio, row.ratio_of, row.goal = mb / RSS_GOAL_MB, "RSS / 150 MB", "<=1.0x"
        rows.append(row)
    return rows


def total_s_ratio(times: StartTimes) -> float | None:
    """The cold start over the slowest component's own start."""
    return common.div(times.total_s, times.slowest()[1])
