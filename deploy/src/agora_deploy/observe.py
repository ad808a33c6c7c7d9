"""What `agora status` reads off each running service's /metrics: outbox and consumer lag."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

#: Metric name -> the stack.json key it is reported under (summed over labels).
WATCHED = {
    "agora_outbox_backlog": "outbox_backlog",
    "agora_outbox_oldest_pending_age_seconds": "outbox_oldest_age_s",
    "agora_consumer_lag": "consumer_lag",
}


def service_gauges(base_url: str, *, timeout: float = 2.0) -> dict[str, str]:
    """Return the watched gauges of one service, as flat strings; empty when it is unreachable."""
    try:
        resp = httpx.get(f"{base_url}/metrics", timeout=timeout)
        resp.raise_for_status()
    except httpx.HTTPError:
        return {}
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(resp.text):
        key = WATCHED.get(family.name)
        if key is None:
            continue
        for sample in family.samples:
            if sample.name == family.name:
                totals[key] = totals.get(key, 0.0) + float(sample.value)
    return {key: f"{value:g}" for key, value in totals.items()}
