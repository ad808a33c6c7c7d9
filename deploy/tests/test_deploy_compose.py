"""docker-compose.yml: what it publishes, how it starts, and that every service gets its settings.

Two layers. The parse-level tests read the compose files with PyYAML and resolve ``${...}``
the way compose does, so they run everywhere. The ``docker-compose`` tests run the real
``docker-compose config`` (Debian's 1.29 validates without a Docker engine) and are skipped
where it is not installed; they also check that the parse-level resolution matches compose's.
"""

from __future__ import annotations

import base64
import importlib
import ipaddress
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
from agora_deploy.launchers import gateway as gateway_launcher
from agora_deploy.services import REGISTRY
from pydantic import AliasChoices
from pydantic.fields import FieldInfo

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
TLS_OVERRIDE = REPO / "deploy" / "docker" / "compose.tls.yml"
TLS_DYNAMIC = REPO / "deploy" / "docker" / "gateway" / "tls.yml"
ENV_EXAMPLE = REPO / ".env.example"
ENTRYPOINT = REPO / "deploy" / "docker" / "entrypoint.sh"
DOCKERFILE = "deploy/docker/service.Dockerfile"

#: The variables compose must refuse to run without (secrets, and where emails link to).
REQUIRED = (
    "POSTGRES_PASSWORD",
    "USERS_DB_PASSWORD",
    "ITEMS_DB_PASSWORD",
    "NOTIFIER_DB_PASSWORD",
    "REDIS_PASSWORD",
    "PUBLIC_URL",
)
#: Each service's pydantic-settings class.
SETTINGS = {spec.name: spec.settings.partition(":")[::2] for spec in REGISTRY}
INFRA = ("postgres", "redis", "kafka", "mailpit")
#: (host ip or "" for all interfaces, host port, container port) per service, nothing else.
EXPECTED_PORTS = {
    "gateway": {("", 8080, 80)},
    "kafka": {("127.0.0.1", 9092, 9092)},
    "mailpit": {("127.0.0.1", 8025, 8025)},
    # Profile `observability` only: the UIs, on loopback.
    "prometheus": {("127.0.0.1", 9090, 9090)},
    "grafana": {("127.0.0.1", 3001, 3000)},
    "jaeger": {("127.0.0.1", 16686, 16686)},
}


# --- compose's variable interpolation, for the parse-level tests -----------------------------

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariableError(Exception):
    """A ``${VAR:?message}`` whose variable is unset or empty."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Resolve ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-d}``, ``${VAR-d}``, ``${VAR:?m}``, ..."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        value = env.get(name)
        op, arg = match["op"], match["arg"] or ""
        missing = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-"):
            return arg if missing else str(value)
        if op in (":?", "?"):
            if missing:
                raise MissingVariableError(name, arg)
            return str(value)
        return value or ""

    return _VARIABLE.sub(replace, text)


def resolve(node: Any, env: Mapping[str, str]) -> Any:
    """Interpolate every string of a loaded YAML document."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(item, env) for item in node]
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    return node


def load_yaml(path: Path) -> dict[str, Any]:
    """Load a YAML mapping (merge keys resolved, as compose does)."""
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict), f"{path} is not a mapping"
    return document


def variables(text: str) -> dict[str, list[str | None]]:
    """Every variable a compose file reads, with the defaults it gives it (None: required)."""
    found: dict[str, list[str | None]] = {}
    for match in _VARIABLE.finditer(text):
        name = match["braced"] or match["named"]
        if not name:
            continue
        op = match["op"] or ""
        found.setdefault(name, []).append(match["arg"] if "-" in op else None)
    return found


def env_file(path: Path) -> dict[str, str]:
    """Parse a .env file: NAME=value lines, optional quotes; comments and blanks skipped."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f"{path}: not NAME=value: {line!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def secrets_env() -> dict[str, str]:
    """Values for the required variables (distinct, long, URL-safe)."""
    env = {name: f"{name.lower().replace('_', '')}-0123456789abcdef" for name in REQUIRED}
    env["PUBLIC_URL"] = "https://agora.example.test"
    return env


def write_env(path: Path, env: Mapping[str, str]) -> Path:
    """Write an env file for ``docker-compose --env-file``."""
    path.write_text("".join(f"{name}={value}\n" for name, value in env.items()))
    return path


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """docker-compose.yml resolved with the required variables set, the rest at defaults."""
    return dict(resolve(load_yaml(COMPOSE), secrets_env()))


@pytest.fixture(scope="module")
def services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The resolved services."""
    return dict(config["services"])


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping (compose accepts a list of NAME=value too)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(str(item).partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def is_job(service: Mapping[str, Any]) -> bool:
    """A one-shot job (migrations, key provisioning): not restarted, waited for to complete."""
    return str(service.get("restart", "")) == "no"


def built_service(service: Mapping[str, Any]) -> str | None:
    """Which Agora service's image this compose service runs (its SERVICE build arg)."""
    build = service.get("build")
    if not isinstance(build, dict) or build.get("dockerfile") != DOCKERFILE:
        return None
    return str(build["args"]["SERVICE"])


def app_services(services: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The long-running Agora services (not their jobs)."""
    return {n: s for n, s in services.items() if built_service(s) and not is_job(s)}


def published_ports(service: Mapping[str, Any]) -> set[tuple[str, int, int]]:
    """(host ip, host port, container port) of every published port, short or long syntax."""
    found: set[tuple[str, int, int]] = set()
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            if port.get("published") is None:
                continue
            host_ip = str(port.get("host_ip") or "")
            found.add((host_ip, int(port["published"]), int(port["target"])))
            continue
        spec = str(port).split("/", 1)[0]
        parts = spec.rsplit(":", 2)
        if len(parts) == 1:
            continue  # container port only: not published on a fixed host port
        if len(parts) == 2:
            parts.insert(0, "")
        host_ip = "" if parts[0] in ("", "0.0.0.0") else parts[0]
        found.add((host_ip, int(parts[1]), int(parts[2])))
    return found


def flag_values(command: list[str]) -> dict[str, str]:
    """``--name=value`` flags of a command as {name: value}."""
    out: dict[str, str] = {}
    for arg in command:
        if arg.startswith("--"):
            name, _, value = arg[2:].partition("=")
            out[name] = value
    return out


# --- the environment file --------------------------------------------------------------------


def test_env_example_lists_every_variable_with_compose_defaults() -> None:
    text = ENV_EXAMPLE.read_text()
    listed = env_file(ENV_EXAMPLE)
    commented = set(re.findall(r"^#\s*([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))
    used: dict[str, list[str | None]] = {}
    for path in (COMPOSE, TLS_OVERRIDE):
        for name, defaults in variables(path.read_text()).items():
            used.setdefault(name, []).extend(defaults)
    missing = set(used) - set(listed) - commented
    assert not missing, f".env.example does not mention {sorted(missing)}"
    stale = (set(listed) | commented) - set(used)
    assert not stale, f".env.example lists variables compose never reads: {sorted(stale)}"
    for name, defaults in used.items():
        distinct = {d for d in defaults if d is not None}
        if name in listed and len(distinct) == 1 and None not in defaults:
            assert listed[name] == distinct.pop(), f"{name}: .env.example differs from compose"
        if len(distinct) > 1:
            # One value cannot match two defaults (e.g. HSTS off over HTTP, on with TLS).
            assert name in commented, f"{name} must stay commented out"
            assert name not in listed, f"{name} must stay commented out"
    required = {name for name, defaults in used.items() if None in defaults}
    assert required == set(REQUIRED)
    for name in required - {"PUBLIC_URL"}:
        assert listed[name] == "", f"{name}: .env.example must not ship a usable secret"


def test_every_required_variable_is_refused_when_missing_or_empty() -> None:
    document = load_yaml(COMPOSE)
    resolve(document, secrets_env())  # complete: resolves
    for name in REQUIRED:
        unset = {k: v for k, v in secrets_env().items() if k != name}
        empty = {**secrets_env(), name: ""}
        for env in (unset, empty):
            with pytest.raises(MissingVariableError) as info:
                resolve(document, env)
            assert info.value.name == name
            assert name in info.value.message


# --- what is published, how things start ------------------------------------------------------


def test_only_the_gateway_kafka_external_and_mailpit_ui_are_published(
    services: dict[str, dict[str, Any]],
) -> None:
    published = {name: published_ports(s) for name, s in services.items() if published_ports(s)}
    assert published == EXPECTED_PORTS
    for name, service in services.items():
        assert service.get("network_mode") != "host", name


def test_every_service_has_a_healthcheck_and_waits_for_healthy_dependencies(
    services: dict[str, dict[str, Any]],
) -> None:
    jobs = {name for name, s in services.items() if is_job(s)}
    assert jobs == {"users-migrate", "users-keys", "items-migrate", "notifier-migrate"}
    for name, service in services.items():
        if name not in jobs:
            check = service.get("healthcheck") or {}
            assert check.get("test"), f"{name}: no healthcheck"
            assert not check.get("disable"), f"{name}: healthcheck disabled"
            assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            wanted = "service_completed_successfully" if target in jobs else "service_healthy"
            assert spec.get("condition") == wanted, f"{name} -> {target}"
    for name in app_services(services):
        depends = services[name]["depends_on"]
        assert f"{name}-migrate" in depends, f"{name} may serve before its migrations"
        assert {"postgres", "redis", "kafka"} <= set(depends), name
    assert "users-keys" in services["users"]["depends_on"]
    assert set(services["gateway"]["depends_on"]) == set(SETTINGS)


def test_services_run_in_production_against_the_compose_infrastructure(
    services: dict[str, dict[str, Any]],
) -> None:
    built = {name: b for name, s in services.items() if (b := built_service(s)) is not None}
    assert set(built.values()) == set(SETTINGS)
    for name, service_name in built.items():
        env = environment(services[name])
        assert env["AGORA_ENV"] == "production", name
        assert env["KAFKA_ENABLE_IDEMPOTENCE"] == "true", name
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092", name
        assert env["JWKS_URL"] == "http://users:8000/.well-known/jwks.json", name
        password = secrets_env()["REDIS_PASSWORD"]
        assert env["REDIS_URL"] == f"redis://:{password}@redis:6379/0", name
        # Its own database, as its own role.
        db_password = secrets_env()[f"{service_name.upper()}_DB_PASSWORD"]
        expected = f"postgresql://{service_name}:{db_password}@postgres:5432/{service_name}"
        assert env["DATABASE_URL"] == expected, name
        assert services[name]["image"].startswith(f"agora/{service_name}:"), name
    assert environment(services["notifier"])["SMTP_URL"] == "smtp://mailpit:1025"
    for name in app_services(services):
        assert services[name].get("read_only") is True, name
        assert "no-new-privileges:true" in services[name].get("security_opt", []), name


def test_gateway_mounts_the_dynamic_config_of_the_embedded_stack(
    services: dict[str, dict[str, Any]],
) -> None:
    gateway = services["gateway"]
    directory = flag_values(gateway["command"])["providers.file.directory"]
    mounts = [str(v).split(":") for v in gateway["volumes"]]
    dynamic = [m for m in mounts if (REPO / m[0]).resolve() == gateway_launcher.DYNAMIC_CONFIG]
    assert len(dynamic) == 1, "the gateway must mount deploy/gateway/dynamic.yml"
    _source, target, mode = dynamic[0]
    assert Path(target).parent == Path(directory)
    assert mode == "ro"
    env = environment(gateway)
    for name in SETTINGS:
        assert env[f"{name.upper()}_UPSTREAM"] == f"http://{name}:8000"
    assert env["GATEWAY_ENTRYPOINTS"] == "web"
    assert flag_values(gateway["command"])["entrypoints.web.address"] == ":80"
    # The error answers loop back to Traefik's internal entrypoint inside the container.
    internal_port = flag_values(gateway["command"])["entrypoints.internal.address"]
    assert env["GATEWAY_INTERNAL_URL"] == f"http://127.0.0.1{internal_port}"


def launcher_argv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """The argv the embedded stack starts Traefik with (captured, nothing started)."""
    captured: list[list[str]] = []

    class Recorder:
        def __init__(self, name: str, argv: list[str], *args: object, **kwargs: object) -> None:
            captured.append(list(argv))
            self.pid = 0

        def start(self) -> None:
            return None

        def wait_healthy(self, *args: object, **kwargs: object) -> None:
            return None

    monkeypatch.setattr(gateway_launcher, "ManagedProcess", Recorder)
    monkeypatch.setattr(gateway_launcher, "ensure_port_free", lambda *a, **k: None)
    monkeypatch.setattr(gateway_launcher, "traefik_binary", lambda: Path("traefik"))
    gateway_launcher.start_gateway(tmp_path, port=18080, internal_port=18082, upstreams={})
    assert len(captured) == 1
    return captured[0][1:]


def test_gateway_flags_mirror_the_embedded_launcher(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    embedded = flag_values(launcher_argv(monkeypatch, tmp_path))
    compose = flag_values(services["gateway"]["command"])
    # Where compose differs by design: a directory (dynamic.yml + the optional tls.yml) and
    # the access log on stdout, where `docker compose logs` collects it.
    differs = {"providers.file.filename": "providers.file.directory", "accesslog.filepath": None}
    for name, value in embedded.items():
        if name in differs:
            replacement = differs[name]
            assert replacement is None or replacement in compose, name
            continue
        assert name in compose, f"compose's gateway lacks --{name}"
        if name.endswith(".address"):
            # Same entrypoint, container address: every interface, a fixed port.
            assert re.fullmatch(r":\d+", compose[name]), f"--{name}={compose[name]}"
        elif name != "log.level":
            assert compose[name] == value, f"--{name}: {compose[name]!r} != {value!r}"


def test_tls_override_repeats_the_base_flags_and_adds_the_websecure_entrypoint(
    services: dict[str, dict[str, Any]],
) -> None:
    override = resolve(load_yaml(TLS_OVERRIDE), secrets_env())["services"]["gateway"]
    base_command = services["gateway"]["command"]
    assert override["command"][: len(base_command)] == base_command, "base flags drifted"
    flags = flag_values(override["command"])
    assert flags["entrypoints.websecure.address"] == ":443"
    assert flags["entrypoints.websecure.http.tls"] == "true"
    assert flags["entrypoints.web.http.redirections.entrypoint.scheme"] == "https"
    assert flags["entrypoints.web.http.redirections.entrypoint.to"] == ":8443"
    assert published_ports(override) == {("", 8443, 443)}
    assert override["environment"]["GATEWAY_ENTRYPOINTS"] == "websecure"
    assert int(override["environment"]["GATEWAY_HSTS_SECONDS"]) >= 31_536_000
    mounts = {Path(str(v).split(":")[1]): str(v).split(":") for v in override["volumes"]}
    directory = Path(flags["providers.file.directory"])
    tls_mount = mounts[directory / "tls.yml"]
    assert (REPO / tls_mount[0]).resolve() == TLS_DYNAMIC
    assert tls_mount[2] == "ro"
    certs = [m for m in mounts.values() if (REPO / m[0]).resolve() == REPO / "deploy" / "certs"]
    assert len(certs) == 1
    assert certs[0][2] == "ro"
    certs_target = Path(certs[0][1])
    tls = load_yaml(TLS_DYNAMIC)["tls"]
    files = [tls["stores"]["default"]["defaultCertificate"]]
    files += tls["certificates"]
    for entry in files:
        for key in ("certFile", "keyFile"):
            assert Path(entry[key]).parent == certs_target, entry[key]


def test_services_trust_forwarded_headers_from_the_gateway_only(
    config: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    ipam = config["networks"]["edge"]["ipam"]["config"][0]
    subnet = ipaddress.IPv4Network(ipam["subnet"])
    dynamic_range = ipaddress.IPv4Network(ipam["ip_range"])
    gateway_ip = ipaddress.IPv4Address(services["gateway"]["networks"]["edge"]["ipv4_address"])
    assert gateway_ip in subnet
    assert dynamic_range.subnet_of(subnet)
    assert gateway_ip not in dynamic_range, "a dynamic address could take the gateway's"
    for name, service in app_services(services).items():
        assert environment(service)["FORWARDED_ALLOW_IPS"] == str(gateway_ip), name
        assert "edge" in service["networks"], name
    for name in INFRA:
        networks = services[name].get("networks") or []
        assert "edge" not in networks, f"{name} must not share the gateway's network"
    script = ENTRYPOINT.read_text()
    assert '--proxy-headers --forwarded-allow-ips "${FORWARDED_ALLOW_IPS' in script


def test_kafka_advertises_an_internal_and_an_external_listener(
    services: dict[str, dict[str, Any]],
) -> None:
    env = environment(services["kafka"])
    listeners = dict(item.split("://", 1) for item in env["KAFKA_LISTENERS"].split(","))
    advertised = dict(item.split("://", 1) for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(listeners) == set(protocols) == {"INTERNAL", "EXTERNAL", "CONTROLLER"}
    assert set(advertised) == {"INTERNAL", "EXTERNAL"}  # a controller is never advertised
    assert advertised["INTERNAL"] == "kafka:19092"
    assert listeners["INTERNAL"] == ":19092"
    for name in app_services(services):
        assert environment(services[name])["KAFKA_BOOTSTRAP_SERVERS"] == advertised["INTERNAL"]
    host, port = advertised["EXTERNAL"].rsplit(":", 1)
    assert host == "localhost"
    (published,) = published_ports(services["kafka"])
    assert published == ("127.0.0.1", int(port), int(listeners["EXTERNAL"].rsplit(":", 1)[1]))
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "INTERNAL"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", services["kafka"]["image"])


def test_infrastructure_images_volumes_and_init(services: dict[str, dict[str, Any]]) -> None:
    postgres = services["postgres"]
    assert postgres["image"].split(":")[1].split(".")[0] == "18"
    assert "postgres-data:/var/lib/postgresql" in postgres["volumes"]
    init = [v for v in postgres["volumes"] if "/docker-entrypoint-initdb.d/" in v]
    assert len(init) == 1
    assert init[0].endswith(":ro")
    assert (REPO / init[0].split(":")[0]).is_file()
    env = environment(postgres)
    databases = env["AGORA_DATABASES"].split()
    assert sorted(databases) == sorted(SETTINGS)
    for name in databases:
        assert env[f"{name.upper()}_DB_PASSWORD"] == secrets_env()[f"{name.upper()}_DB_PASSWORD"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--requirepass") + 1] == secrets_env()["REDIS_PASSWORD"]
    assert re.fullmatch(r"traefik:v3\.\d+\.\d+", services["gateway"]["image"])
    assert services["mailpit"]["image"].startswith("axllent/mailpit:")


# --- every setting each service requires is provided ------------------------------------------


def settings_class(service: str) -> type[Any]:
    """Import the service's settings class (every service is installed by `uv sync`)."""
    module_name, class_name = SETTINGS[service]
    module = importlib.import_module(module_name)
    return getattr(module, class_name)  # type: ignore[no-any-return]


def env_names(cls: type[Any], name: str, field: FieldInfo) -> set[str]:
    """The environment variables pydantic-settings reads a field from (upper-cased)."""
    alias = field.validation_alias
    if isinstance(alias, str):
        names = {alias}
    elif isinstance(alias, AliasChoices):
        names = {choice for choice in alias.choices if isinstance(choice, str)}
    elif field.alias:
        names = {field.alias}
    else:
        names = {f"{cls.model_config.get('env_prefix', '')}{name}"}
    return {n.upper() for n in names}


def runs_image_of(services: Mapping[str, dict[str, Any]], service: str) -> Iterator[str]:
    """Compose services that run ``service``'s image (the service and its jobs)."""
    return (name for name, s in services.items() if built_service(s) == service)


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_compose_provides_every_setting_the_service_requires(
    service: str, services: dict[str, dict[str, Any]]
) -> None:
    cls = settings_class(service)
    # Fields without a default, and secrets whose default production refuses.
    defaults = cls.model_construct()
    needed = {n for n, f in cls.model_fields.items() if f.is_required()}
    needed |= set(defaults.secret_fields())
    for compose_name in runs_image_of(services, service):
        provided = {k.upper() for k in environment(services[compose_name])}
        for field_name in needed:
            names = env_names(cls, field_name, cls.model_fields[field_name])
            assert names & provided, f"{compose_name}: nothing sets {field_name} ({names})"


def validate_settings(
    service: str, env: Mapping[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """Build the service's settings in a fresh interpreter that sees only ``env``."""
    module_name, class_name = SETTINGS[service]
    code = f"from {module_name} import {class_name}\ns = {class_name}()\nprint(s.env.value)\n"
    clean = {**env, "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd)}
    return subprocess.run(
        [sys.executable, "-c", code], env=clean, cwd=cwd, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_service_settings_validate_in_production_with_exactly_the_compose_environment(
    service: str, services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    settings_class(service)
    names = list(runs_image_of(services, service))
    assert names
    for compose_name in names:
        result = validate_settings(service, environment(services[compose_name]), tmp_path)
        assert result.returncode == 0, f"{compose_name}: settings refused:\n{result.stderr[-3000:]}"
        assert result.stdout.strip() == "production"


def test_the_settings_check_catches_a_missing_production_setting(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    settings_class("users")
    env = environment(services["users"])
    del env["USERS_KEYS_DIR"]
    result = validate_settings("users", env, tmp_path)
    assert result.returncode != 0
    assert "USERS_KEYS_DIR" in result.stderr


# --- the real docker-compose ------------------------------------------------------------------

DOCKER_COMPOSE = shutil.which("docker-compose")
needs_compose = pytest.mark.skipif(
    DOCKER_COMPOSE is None,
    reason="docker-compose is not on PATH (.ci/run installs Debian's docker-compose when apt "
    "is available); the parse-level tests above still ran",
)


def docker_compose_config(
    tmp_path: Path, env: Mapping[str, str], *files: Path
) -> subprocess.CompletedProcess[str]:
    """``docker-compose config`` with ``env`` as the only variables (nothing from the host)."""
    assert DOCKER_COMPOSE is not None
    env_path = write_env(tmp_path / "compose.env", env)
    argv = [DOCKER_COMPOSE, "--env-file", str(env_path)]
    for path in files or (COMPOSE,):
        argv += ["-f", str(path)]
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    return subprocess.run(
        [*argv, "config"], env=clean, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )


def rendered(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The configuration docker-compose printed."""
    assert result.returncode == 0, result.stderr[-3000:]
    document = yaml.safe_load(result.stdout)
    assert isinstance(document, dict)
    return document


@needs_compose
def test_docker_compose_accepts_the_file_and_resolves_it_as_the_parse_level_tests_do(
    tmp_path: Path, services: dict[str, dict[str, Any]]
) -> None:
    real = rendered(docker_compose_config(tmp_path, secrets_env()))["services"]
    assert set(real) == set(services)
    for name, service in real.items():
        assert environment(service) == environment(services[name]), name
        assert published_ports(service) == EXPECTED_PORTS.get(name, set()), name
        if not is_job(service):
            assert service["healthcheck"]["test"] == services[name]["healthcheck"]["test"]
        for target, spec in (service.get("depends_on") or {}).items():
            assert spec["condition"] == services[name]["depends_on"][target]["condition"]
    gateway_volumes = [str(v) for v in real["gateway"]["volumes"]]
    expected = f"{gateway_launcher.DYNAMIC_CONFIG}:/etc/traefik/dynamic/dynamic.yml:ro"
    assert expected in gateway_volumes


@needs_compose
@pytest.mark.parametrize("name", REQUIRED)
def test_docker_compose_refuses_to_run_without_a_required_variable(
    name: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in secrets_env().items() if k != name}
    result = docker_compose_config(tmp_path, env)
    assert result.returncode != 0
    # The last line carries the ${VAR:?message} message of the variable that is missing.
    assert result.stderr.strip().splitlines()[-1].endswith(f"{name} is required (see .env.example)")


@needs_compose
def test_docker_compose_with_the_env_example_needs_only_the_secrets(tmp_path: Path) -> None:
    example = env_file(ENV_EXAMPLE)
    result = docker_compose_config(tmp_path, example)
    assert result.returncode != 0
    assert any(f"{name} is required" in result.stderr.splitlines()[-1] for name in REQUIRED)
    filled = {**example, **{k: v for k, v in secrets_env().items() if not example.get(k)}}
    real = rendered(docker_compose_config(tmp_path, filled))["services"]
    assert environment(real["notifier"])["NOTIFIER_MAIL_FROM"] == "Agora <no-reply@agora.localhost>"
    assert environment(real["kafka"])["KAFKA_HEAP_OPTS"] == "-Xms512m -Xmx1g"


@needs_compose
def test_docker_compose_tls_override_publishes_https_and_keeps_the_dynamic_config(
    tmp_path: Path,
) -> None:
    real = rendered(docker_compose_config(tmp_path, secrets_env(), COMPOSE, TLS_OVERRIDE))
    gateway = real["services"]["gateway"]
    assert published_ports(gateway) == {("", 8080, 80), ("", 8443, 443)}
    targets = {str(v).split(":")[1] for v in gateway["volumes"]}
    assert {"/etc/traefik/dynamic/dynamic.yml", "/etc/traefik/dynamic/tls.yml"} <= targets
    assert "/etc/traefik/certs" in targets
    assert environment(gateway)["GATEWAY_ENTRYPOINTS"] == "websecure"
    assert "--entrypoints.websecure.http.tls=true" in gateway["command"]
    others = {n: s for n, s in real["services"].items() if n != "gateway"}
    for name, service in others.items():
        assert published_ports(service) == EXPECTED_PORTS.get(name, set()), name


# --- the offline override: the stand-in images, `make compose-e2e` -----------------------------

OFFLINE_OVERRIDE = REPO / "deploy" / "docker" / "compose.offline.yml"


def _offline() -> dict[str, Any]:
    document = yaml.safe_load(OFFLINE_OVERRIDE.read_text())
    assert isinstance(document, dict)
    services: dict[str, Any] = document["services"]
    return services


def test_offline_override_uses_the_stand_ins_the_tests_and_images_sh_name() -> None:
    from agora_deploy.containers import IMAGES

    offline = _offline()
    base = yaml.safe_load(COMPOSE.read_text())["services"]
    built = (REPO / "deploy" / "docker" / "images.sh").read_text()
    compose_name = {"postgres": "postgres", "redis": "redis", "kafka": "kafka", "mail": "mailpit"}
    for name, choice in IMAGES.items():
        service = compose_name[name]
        # The official image is docker-compose.yml's; the stand-in never takes its name.
        assert base[service]["image"] == choice.official, name
        assert offline[service]["image"] == choice.stand_in, name
        assert choice.stand_in.startswith("agora-local/"), name
        assert choice.stand_in in built, f"images.sh does not build {choice.stand_in}"
    assert offline["gateway"]["image"].startswith("agora-local/traefik:")
    assert offline["gateway"]["image"].split(":")[1] == base["gateway"]["image"].split(":")[1]
    assert offline["gateway"]["image"] in built


def test_offline_broker_listens_where_the_services_dial_and_they_do_not_ask_for_idempotence() -> (
    None
):
    offline = _offline()
    command = offline["kafka"]["command"]
    bootstrap = yaml.safe_load(COMPOSE.read_text())["x-service-env"]["KAFKA_BOOTSTRAP_SERVERS"]
    host, port = bootstrap.split(":")
    assert command[command.index("--advertised-listener-url") + 1] == f"tcp://{bootstrap}"
    assert command[command.index("--listener-url") + 1] == f"tcp://0.0.0.0:{port}"
    assert host == "kafka"
    # The official healthcheck runs Kafka's own scripts, which the stand-in does not have.
    assert port in " ".join(offline["kafka"]["healthcheck"]["test"])
    assert "8025/readyz" in " ".join(offline["mailpit"]["healthcheck"]["test"])
    for service in ("users", "items", "notifier"):
        assert offline[service]["environment"]["KAFKA_ENABLE_IDEMPOTENCE"] == "false", service


@needs_compose
def test_docker_compose_merges_the_offline_override(tmp_path: Path) -> None:
    real = rendered(docker_compose_config(tmp_path, secrets_env(), COMPOSE, OFFLINE_OVERRIDE))
    services = real["services"]
    assert services["postgres"]["image"] == "agora-local/postgres:18"
    assert services["kafka"]["image"] == "agora-local/tansu:0.6"
    for service in ("users", "items", "notifier"):
        env = environment(services[service])
        assert env["KAFKA_ENABLE_IDEMPOTENCE"] == "false", service
        # The rest of the environment is the base file's, untouched.
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092"
        assert env["DATABASE_URL"].startswith(f"postgresql://{service}:")
