"""Every metric the alert rules and the Grafana dashboard name exists in a live scrape.

The rules (deploy/observability/prometheus/alerts.yml) and the dashboard
(deploy/observability/grafana/dashboards/agora.json) are checked by promtool and as JSON in
`make observability-check`; neither check knows which metrics Agora exports. Here the whole
stack runs, a registration goes through the gateway (requests, an event, a consumed message,
an email), then each service's /metrics and the gateway's metrics are scraped.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from agora_deploy.testing import SystemStack
from agora_kit.testing.mail import MailClient
from agora_kit.testing.poll import eventually_sync
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
OBSERVABILITY = REPO / "deploy" / "observability"
ALERTS = OBSERVABILITY / "prometheus" / "alerts.yml"
DASHBOARD = OBSERVABILITY / "grafana" / "dashboards" / "agora.json"
#: The sample names a family of each type exposes, from its family name.
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("_count", "_sum", ""),
    "gauge": ("",),
    "info": ("_info",),
}
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, labels, keywords removed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values, string arguments
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    expr = re.sub(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr
    )  # grouping label lists
    found = re.findall(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)\b(?!\s*\()", expr)
    return {name for name in found if name.lower() not in PROMQL_WORDS}


def alert_expressions() -> list[str]:
    """Every rule's expression in alerts.yml."""
    document = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in document["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    """Every panel target's expression, and the template variables' queries."""
    document = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in document["panels"] for t in p.get("targets", [])]
    for variable in document["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            match = re.fullmatch(r"label_values\((\w+),\s*\w+\)", query["query"])
            assert match, query
            exprs.append(match.group(1))
    return exprs


def test_the_extractor_finds_metrics_and_nothing_else() -> None:
    expr = (
        'sum by (service) (rate(agora_notifier_emails_total{outcome="failed"}[10m]))'
        " / clamp_min(sum by (service, le) (rate(http_request_duration_seconds_bucket"
        '{service=~"$service"}[$__rate_interval])), 1e-9) > 0.1 and on (service) up'
    )
    assert metric_names(expr) == {
        "agora_notifier_emails_total",
        "http_request_duration_seconds_bucket",
        "up",
    }


def exposed(text: str) -> set[str]:
    """Every sample name the scrape declares (a labelled family with no child yet included)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names


def scrape(url: str) -> str:
    """One /metrics scrape."""
    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    return response.text


@pytest.fixture(scope="module")
def live_metrics(system_stack: SystemStack) -> dict[str, set[str]]:
    """The metric names each service and the gateway expose after one registration's flow."""
    email = f"obs-{uuid.uuid4().hex[:10]}@example.com"
    with httpx.Client(base_url=system_stack.gateway, timeout=15) as gateway:
        response = gateway.post(
            "/api/v1/users",
            json={"email": email, "name": "Observer", "password": f"pw-{uuid.uuid4().hex}"},
        )
        assert response.status_code == 201, response.text
    # The welcome mail went: the event was relayed, consumed and sent over SMTP.
    with MailClient(system_stack.mail_api) as mail:
        eventually_sync(lambda: mail.to(email), timeout_s=60)
    urls = {
        name: f"{system_stack.service_url(name)}/metrics" for name in ("users", "items", "notifier")
    }
    gateway_info = system_stack.infra.components["gateway"]
    urls["gateway"] = str(gateway_info.extra["metrics_url"])
    return {name: exposed(scrape(url)) for name, url in urls.items()}


def missing_from(exprs: list[str], live: dict[str, set[str]]) -> dict[str, set[str]]:
    """Per expression, the metric names no scrape declares."""
    everywhere = set().union(*live.values())
    return {e: gone for e in exprs if (gone := metric_names(e) - everywhere)}


def test_every_metric_the_alert_rules_name_is_exported(live_metrics: dict[str, set[str]]) -> None:
    exprs = alert_expressions()
    named: set[str] = set().union(*(metric_names(e) for e in exprs))
    # The five alerts of docs/observability.md: outbox age, lag, dead letters, 5xx, SMTP failures.
    assert {
        "agora_outbox_oldest_pending_age_seconds",
        "agora_consumer_lag",
        "agora_consumer_dead_letters_total",
        "http_requests_total",
        "traefik_service_requests_total",
        "agora_notifier_emails_total",
    } <= named
    assert missing_from(exprs, live_metrics) == {}


def test_every_metric_the_dashboard_names_is_exported(live_metrics: dict[str, set[str]]) -> None:
    exprs = dashboard_expressions()
    assert len(exprs) > 20
    assert missing_from(exprs, live_metrics) == {}


def test_each_service_exports_its_own_metrics(live_metrics: dict[str, set[str]]) -> None:
    for service in ("users", "items", "notifier"):
        assert {"http_requests_total", "agora_outbox_oldest_pending_age_seconds"} <= (
            live_metrics[service]
        ), service
    for consumer in ("items", "notifier"):
        assert "agora_consumer_lag" in live_metrics[consumer], consumer
    assert "agora_notifier_emails_total" in live_metrics["notifier"]
    assert "traefik_service_requests_total" in live_metrics["gateway"]
