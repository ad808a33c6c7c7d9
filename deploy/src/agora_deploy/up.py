"""Bring the stack up: infrastructure, databases, topics, migrations, services."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agora_contract import topics
from agora_kit.kafka import ensure_topics
from agora_kit.settings import ServiceSettings
from agora_kit.tracing import TRACES_DIR_ENV

from agora_deploy.infra import Infra
from agora_deploy.launchers.gateway import start_gateway
from agora_deploy.launchers.process import LaunchError, ManagedProcess, free_port
from agora_deploy.services import ServiceSpec, available_services, selected_services
from agora_deploy.stack import ComponentInfo, database_url
from agora_deploy.traces import traces_dir

HOST = "127.0.0.1"


@dataclass(frozen=True)
class UpOptions:
    """How ``agora up`` runs the services."""

    workers: int = 1
    reload: bool = False
    gateway_port: int = 8080
    #: Which registered services to run (None: every installed one).
    services: tuple[str, ...] | None = None
    #: Trace every request: each service process writes its spans under ``traces/``.
    trace: bool = False

    def to_json(self) -> str:
        """These options as JSON (handed to the detached supervisor)."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> UpOptions:
        """Options written by ``to_json``."""
        raw = json.loads(text)
        services = raw.get("services")
        return cls(
            workers=int(raw["workers"]),
            reload=bool(raw["reload"]),
            gateway_port=int(raw["gateway_port"]),
            services=tuple(services) if services is not None else None,
            trace=bool(raw.get("trace", False)),
        )

    def selected(self) -> list[ServiceSpec]:
        """The services this run starts (LaunchError names any that is not installed)."""
        return selected_services(self.services)


def all_topics() -> list[str]:
    """Every topic the stack needs: domain topics plus each group's retry and dead-letter."""
    names = list(topics.DOMAIN_TOPICS)
    for spec in available_services():
        for group in spec.consumer_groups:
            names += [topics.retry_topic(group), topics.dead_letter_topic(group)]
    return names


def create_topics(bootstrap: str, *, idempotence: bool) -> None:
    """Create the stack's topics (never left to broker auto-creation)."""
    settings = ServiceSettings(
        kafka_bootstrap_servers=bootstrap,
        kafka_enable_idempotence=idempotence,
        service_name="agora-up",
    )
    asyncio.run(ensure_topics(settings, all_topics()))


def _probe(url: str, path: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(f"{url}{path}", timeout=2) as resp:  # noqa: S310
                return int(resp.status) == 200
        except OSError:
            return False

    return check


def service_env(infra: Infra, spec: ServiceSpec, urls: dict[str, str]) -> dict[str, str]:
    """The environment one service gets (docs/interfaces.md, Environment variables)."""
    pg = infra.components["postgres"].url
    kafka = infra.components["kafka"]
    env = {
        **os.environ,
        "AGORA_ENV": os.environ.get("AGORA_ENV", "development"),
        "AGORA_HOME": str(infra.state_dir),
        "DATABASE_URL": database_url(pg, spec.database),
        "REDIS_URL": infra.components["redis"].url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka.url,
        "KAFKA_ENABLE_IDEMPOTENCE": "false" if kafka.extra.get("flavour") == "tansu" else "true",
        "SMTP_URL": infra.components["mail"].text("smtp_url"),
        "JWKS_URL": f"{urls.get('users', '')}/.well-known/jwks.json",
        "PUBLIC_URL": f"http://{HOST}:{urls.get('gateway_port', '8080')}",
        **{f"{name.upper()}_URL": url for name, url in urls.items() if name != "gateway_port"},
        **spec.env,
    }
    return env


def migrate(spec: ServiceSpec, env: dict[str, str]) -> None:
    """Run the service's Alembic migrations to head."""
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=spec.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise LaunchError(
            f"{spec.name}: migrations failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )


def start_service(
    infra: Infra, spec: ServiceSpec, port: int, env: dict[str, str], options: UpOptions
) -> ComponentInfo:
    """Start one service under uvicorn and wait until it is ready."""
    argv = [
        sys.executable, "-m", "uvicorn", "--factory", spec.app,
        "--host", HOST, "--port", str(port), "--no-access-log",
        "--timeout-graceful-shutdown", "10",
    ]  # fmt: skip
    if options.reload:
        argv += ["--reload", *[f"--reload-dir={spec.path / d}" for d in spec.reload_dirs]]
    elif options.workers > 1:
        argv += ["--workers", str(options.workers)]
    env = dict(env)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    metrics_dir: Path | None = None
    if options.workers > 1 and not options.reload:
        # Every worker in each /metrics scrape (agora_kit.metrics): one folder per service,
        # emptied before every start so a dead worker's values do not linger.
        metrics_dir = infra.state_dir / "metrics" / spec.name
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    process = ManagedProcess(
        spec.name,
        argv,
        infra.log_dir / f"{spec.name}.log",
        env=env,
        cwd=spec.path,
        die_with_parent=infra.die_with_parent,
        ports=(port,),
    )
    url = f"http://{HOST}:{port}"
    process.health = _probe(url, "/health/ready")
    process.liveness = _probe(url, "/health/live")
    if metrics_dir is not None:
        process.pre_start = functools.partial(_empty_folder, metrics_dir)
    process.start()
    info = ComponentInfo(spec.name, url, process.pid, "running", {"docs_url": f"{url}/docs"})
    infra.add_process(info, process)
    try:
        process.wait_healthy(timeout=90)
    except LaunchError:
        info.state = "failed"
        raise
    return info


def _empty_folder(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)


def bring_up(infra: Infra, options: UpOptions) -> None:
    """Start everything in order, health-checked, writing stack.json after each step."""
    services = options.selected()
    if options.trace:
        _empty_folder(traces_dir(infra.state_dir))  # one run's traces, not every run's
    for start in (infra.start_postgres, infra.start_redis, infra.start_kafka, infra.start_mail):
        start()
        infra.write()
    kafka = infra.components["kafka"]
    create_topics(kafka.url, idempotence=kafka.extra.get("flavour") != "tansu")
    urls: dict[str, str] = {"gateway_port": str(options.gateway_port)}
    ports = {spec.name: free_port() for spec in services}
    urls.update({name: f"http://{HOST}:{port}" for name, port in ports.items()})
    for spec in services:
        infra.create_database(spec.database)
        env = service_env(infra, spec, urls)
        if options.trace:
            # agora_kit.tracing: spans as JSON lines, read back by `agora trace`.
            env[TRACES_DIR_ENV] = str(traces_dir(infra.state_dir))
        migrate(spec, env)
        start_service(infra, spec, ports[spec.name], env, options)
        infra.write()
    if services:
        upstreams = {s.name: urls[s.name] for s in services}
        mail = infra.components.get("mail")
        if mail is not None and mail.url:
            upstreams["mail"] = mail.url  # the inbox at /mail/, in development only
        start_stack_gateway(infra, options, upstreams)
        infra.write()


def gateway_settings() -> dict[str, str]:
    """The GATEWAY_* variables of the environment (rate and body limits, CORS, ...)."""
    return {k: v for k, v in os.environ.items() if k.startswith("GATEWAY_")}


def start_stack_gateway(infra: Infra, options: UpOptions, upstreams: dict[str, str]) -> None:
    """Start Traefik in front of the running services."""
    gateway = start_gateway(
        infra.log_dir,
        port=options.gateway_port,
        internal_port=free_port(),
        upstreams=upstreams,
        settings=gateway_settings(),
        die_with_parent=infra.die_with_parent,
    )
    info = ComponentInfo(
        "gateway",
        gateway.url,
        gateway.process.pid,
        "running",
        {"metrics_url": gateway.metrics_url, "docs_url": f"{gateway.url}/users/docs"},
    )
    infra.add_process(info, gateway.process)
