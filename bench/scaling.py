"""Scaling: a second items process with ``--workers N`` on the same database."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import TYPE_CHECKING

import httpx
from agora_deploy import up
from agora_deploy.infra import Infra
from agora_deploy.launchers.process import ManagedProcess, free_port
from agora_deploy.services import available_services
from agora_deploy.stack import ComponentInfo
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    # mypy names files by package path from the repo root (explicit_package_bases); run as a
    # script, this folder is on sys.path and each module here is a top-level one.
    from bench import startup
else:
    import startup


def start_items_workers(infra: Infra, workers: int) -> tuple[str, ManagedProcess]:
    """A second items process with ``--workers N`` on the same database; the caller stops it."""
    spec = next(s for s in available_services() if s.name == "items")
    urls: dict[str, str] = {
        name: infra.components[name].url for name in startup.SERVICES if name in infra.components
    }
    gateway = infra.components.get("gateway")
    urls["gateway_port"] = gateway.url.rsplit(":", 1)[-1] if gateway else "8080"
    env = up.service_env(infra, spec, urls)
    metrics = infra.state_dir / "metrics" / f"items-w{workers}"
    metrics.mkdir(parents=True, exist_ok=True)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    port = free_port()
    argv = [
        sys.executable, "-m", "uvicorn", "--factory", spec.app, "--host", "127.0.0.1",
        "--port", str(port), "--no-access-log", "--timeout-graceful-shutdown", "10",
        "--workers", str(workers),
    ]  # fmt: skip
    process = ManagedProcess(
        f"items-w{workers}",
        argv,
        infra.log_dir / f"items-w{workers}.log",
        env=env,
        cwd=spec.path,
        die_with_parent=True,
        ports=(port,),
    )
    process.start()
    infra.add_process(
        ComponentInfo(f"items-w{workers}", f"http://127.0.0.1:{port}", process.pid, "running"),
        process,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return url, process
        if not process.alive():
            raise RuntimeError(f"items --workers {workers} exited; see {process.log_path}")
        time.sleep(0.3)
    raise RuntimeError(f"items --workers {workers} was not ready within 90 s")


def wait_relay_active(items_url: str, *, timeout: float = 30.0) -> float:
    """Wait until the stack's items relay holds the outbox lock again; return the seconds.

    After the ``--workers`` process stops, its relay may have held the lock: the stack's relay,
    a standby, takes it over at its next retry (about 2 s). Until then no item event is
    published, which the next rows would count as latency.
    """
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        with contextlib.suppress(httpx.HTTPError):
            resp = httpx.get(f"{items_url}/metrics", timeout=2)
            resp.raise_for_status()
            for family in text_string_to_metric_families(resp.text):
                if family.name == "agora_relay_active" and any(
                    s.value >= 1 for s in family.samples if s.name == family.name
                ):
                    return time.monotonic() - began
        time.sleep(0.2)
    raise RuntimeError(f"the items relay did not take the outbox lock within {timeout:.0f} s")
