"""Prometheus metrics on a per-app registry (tests build several apps in one process).

Under ``uvicorn --workers N`` each worker is a process with its own registry, so a scrape
would see one worker. With ``PROMETHEUS_MULTIPROC_DIR`` set (before the process starts:
prometheus_client picks its storage at import), every worker writes its values to files in
that folder and ``/metrics`` merges the files of all workers: counters and histograms add
up, each gauge follows its ``multiprocess_mode``. The folder must be empty when the service
starts, and must be one per service. The process, platform and GC collectors describe one
process only and are left out of a merged scrape.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    gc_collector,
    generate_latest,
    multiprocess,
    platform_collector,
    process_collector,
)
from starlette.requests import Request
from starlette.responses import Response

#: Route label for requests no route matched, so scanners cannot blow up label cardinality.
UNMATCHED_ROUTE = "<unmatched>"


#: The variable prometheus_client reads for its multiprocess mode.
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The folder of the multiprocess mode, or None when every process reports alone."""
    return os.environ.get(MULTIPROC_DIR_ENV) or None


def create_registry() -> CollectorRegistry:
    """Return a fresh registry with the process, platform and GC collectors."""
    registry = CollectorRegistry()
    process_collector.ProcessCollector(registry=registry)
    platform_collector.PlatformCollector(registry=registry)
    gc_collector.GCCollector(registry=registry)
    return registry


class HttpMetrics:
    """Request count, latency and in-flight gauge, labelled by route template."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request duration by method and route template.",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )
        self.in_flight = Gauge(
            "http_requests_in_flight",
            "HTTP requests being served.",
            registry=registry,
            # Across workers: the sum of the live processes' values.
            multiprocess_mode="livesum",
        )

    def observe(self, *, method: str, route: str, status: int, duration_s: float) -> None:
        """Record one finished request."""
        self.requests.labels(method, route, str(status)).inc()
        self.duration.labels(method, route).observe(duration_s)


def merged_registry(path: str) -> CollectorRegistry:
    """A registry that reads every worker's values from the multiprocess folder ``path``."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return registry


def metrics_response(registry: CollectorRegistry) -> Response:
    """Render ``registry``, or every worker's metrics in multiprocess mode, as Prometheus text."""
    path = multiprocess_dir()
    source = merged_registry(path) if path is not None else registry
    return Response(generate_latest(source), media_type=CONTENT_TYPE_LATEST)


async def metrics_endpoint(request: Request) -> Response:
    """Serve the app's registry (``/metrics``)."""
    return metrics_response(request.app.state.ctx.registry)
