"""The compose profile `observability`: Prometheus, Grafana and Jaeger wired to Agora.

Their images cannot be pulled here, so the profile is checked as configuration only: with
PyYAML, and with the real ``docker-compose config`` where it is installed. The rules and the
dashboard themselves are checked by `make observability-check` (promtool) and against a live
scrape in tests/e2e/test_e2e_observability.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
OBSERVABILITY = REPO / "deploy" / "observability"
PROFILE = {"prometheus", "grafana", "jaeger"}
SECRETS = {
    "POSTGRES_PASSWORD": "0123456789abcdef01",
    "USERS_DB_PASSWORD": "0123456789abcdef02",
    "ITEMS_DB_PASSWORD": "0123456789abcdef03",
    "NOTIFIER_DB_PASSWORD": "0123456789abcdef04",
    "REDIS_PASSWORD": "0123456789abcdef05",
    "PUBLIC_URL": "http://localhost:8080",
}


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    """docker-compose.yml's services, as written."""
    document = yaml.safe_load(COMPOSE.read_text())
    found: dict[str, dict[str, Any]] = document["services"]
    return found


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Bind mounts of a service: container path -> host path (relative to the repo)."""
    out: dict[str, str] = {}
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith("./"):
            out[target] = source
    return out


def test_only_the_observability_services_are_in_a_profile(
    services: dict[str, dict[str, Any]],
) -> None:
    in_profiles = {name: s["profiles"] for name, s in services.items() if "profiles" in s}
    assert in_profiles == {key: ["observability"] for key in PROFILE}


def test_mounted_files_exist(services: dict[str, dict[str, Any]]) -> None:
    for name in PROFILE:
        for target, source in mounts(services[name]).items():
            assert (REPO / source).exists(), f"{name}: {source} -> {target}"
            assert services[name]["volumes"], name
    prometheus = mounts(services["prometheus"])
    assert prometheus["/etc/prometheus/prometheus.yml"].endswith("prometheus/prometheus.yml")
    assert prometheus["/etc/prometheus/alerts.yml"].endswith("prometheus/alerts.yml")


def test_prometheus_scrapes_every_service_and_the_gateway_on_a_shared_network(
    services: dict[str, dict[str, Any]],
) -> None:
    config = yaml.safe_load((OBSERVABILITY / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    targets: dict[str, str] = {}
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            for target in static["targets"]:
                targets[static["labels"]["service"]] = target
    assert targets == {
        "users": "users:8000",
        "items": "items:8000",
        "notifier": "notifier:8000",
        "gateway": "gateway:8082",
    }
    reach = set(services["prometheus"]["networks"])
    for target in targets.values():
        host, port = target.split(":")
        networks = services[host]["networks"]
        assert reach & set(networks), f"prometheus shares no network with {host}"
        if host == "gateway":
            assert "--metrics.prometheus.entrypoint=internal" in services[host]["command"]
            assert f"--entrypoints.internal.address=:{port}" in services[host]["command"]
        else:
            assert port in services[host]["expose"], host


def test_grafana_provisions_the_dashboard_and_both_datasources(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana = services["grafana"]
    dashboards = yaml.safe_load(
        (OBSERVABILITY / "grafana" / "provisioning" / "dashboards" / "agora.yml").read_text()
    )
    path = dashboards["providers"][0]["options"]["path"]
    assert mounts(grafana)[path] == "./deploy/observability/grafana/dashboards"
    assert (OBSERVABILITY / "grafana" / "dashboards" / "agora.json").is_file()
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{path}/agora.json"
    datasources = yaml.safe_load(
        (OBSERVABILITY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    urls = {d["type"]: d["url"] for d in datasources}
    assert urls == {"prometheus": "http://prometheus:9090", "jaeger": "http://jaeger:16686"}
    assert set(grafana["depends_on"]) == {"prometheus", "jaeger"}
    for name in ("prometheus", "jaeger"):
        assert set(grafana["networks"]) & set(services[name]["networks"]), name


DOCKER_COMPOSE = shutil.which("docker-compose")


@pytest.mark.skipif(
    DOCKER_COMPOSE is None,
    reason="docker-compose is not on PATH (.ci/run installs Debian's docker-compose when apt "
    "is available); the parse-level tests above still ran",
)
def test_docker_compose_resolves_the_profile(tmp_path: Path) -> None:
    assert DOCKER_COMPOSE is not None
    env_file = tmp_path / "compose.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in SECRETS.items()))
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    argv = [DOCKER_COMPOSE, "--env-file", str(env_file), "-f", str(COMPOSE)]
    result = subprocess.run(
        [*argv, "--profile", "observability", "config"],
        env=clean,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    resolved = yaml.safe_load(result.stdout)["services"]
    assert set(resolved) >= PROFILE
    command = resolved["prometheus"]["command"]
    assert "--storage.tsdb.retention.time=15d" in command
    for name in PROFILE:
        ports = resolved[name]["ports"]
        assert ports, name
        for port in ports:
            # Compose 1.29 prints the short syntax, v2 the long one.
            host_ip = port["host_ip"] if isinstance(port, dict) else str(port).split(":")[0]
            assert host_ip == "127.0.0.1", (name, port)
