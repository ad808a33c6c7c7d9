"""The test infrastructure on containers (testcontainers), for ``AGORA_TEST_INFRA=docker``.

PostgreSQL, Redis, the Kafka-protocol broker and the mail sink each start in a container the
first time a test asks for it, and are removed at the end of the session. Image names are
settings; they default to the official images docker-compose.yml uses:

    AGORA_POSTGRES_IMAGE  postgres:18                AGORA_REDIS_IMAGE  redis:7.4
    AGORA_KAFKA_IMAGE     apache/kafka:4.1.1         AGORA_MAIL_IMAGE   axllent/mailpit:v1.27.8

``AGORA_OFFLINE_IMAGES=1`` selects the stand-ins ``deploy/docker/images.sh`` builds with no
registry (``agora-local/postgres:18`` ...); without it, an official image that is neither
present nor pullable falls back to its stand-in. Every container carries the labels
``org.testcontainers=true`` and ``agora.cleanup=true`` (``deploy/docker/engine.sh stop`` removes
them), and ``agora.owner-pid``: a session removes the containers of sessions that died.
"""

from __future__ import annotations

import os
import socket
import struct
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from agora_deploy.launchers.process import LaunchError

if TYPE_CHECKING:
    pass

INFRA_SETTING = "AGORA_TEST_INFRA"
OFFLINE_SETTING = "AGORA_OFFLINE_IMAGES"
CLEANUP_LABEL = "agora.cleanup"
OWNER_LABEL = "agora.owner-pid"
POSTGRES_PASSWORD = "agora-test"  # noqa: S105 - a throwaway container's password


# What this process started, for the pytest summary: component -> image.
STARTED: dict[str, str] = {}


@dataclass(frozen=True)
class ImageChoice:
    """One backing service's image setting, its official default and its offline stand-in."""

    setting: str
    official: str
    stand_in: str


IMAGES: Mapping[str, ImageChoice] = {
    "postgres": ImageChoice("AGORA_POSTGRES_IMAGE", "postgres:18", "agora-local/postgres:18"),
    "redis": ImageChoice("AGORA_REDIS_IMAGE", "redis:7.4", "agora-local/redis:7"),
    "kafka": ImageChoice("AGORA_KAFKA_IMAGE", "apache/kafka:4.1.1", "agora-local/tansu:0.6"),
    "mail": ImageChoice("AGORA_MAIL_IMAGE", "axllent/mailpit:v1.27.8", "agora-local/mailpit:sink"),
}


def use_containers(env: Mapping[str, str] | None = None) -> bool:
    """True when ``AGORA_TEST_INFRA=docker`` asks for the container infrastructure."""
    value = (os.environ if env is None else env).get(INFRA_SETTING, "embedded").strip().lower()
    if value not in {"embedded", "docker"}:
        raise LaunchError(f"{INFRA_SETTING} must be 'embedded' or 'docker', not {value!r}")
    return value == "docker"


def _configure_testcontainers() -> None:
    # Read by testcontainers when it is imported. Ryuk (its reaper) is an image that cannot be
    # pulled without a registry: our fixtures remove their containers, and the labels let
    # engine.sh remove what a killed session left. docker_host: testcontainers would otherwise
    # think it runs inside a container (a marker file at / on these machines) and dial the
    # bridge gateway instead of the published ports on the host.
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")


def docker_client() -> Any:
    """A Docker API client, or a LaunchError that says how to get an engine."""
    _configure_testcontainers()
    import docker

    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:
        raise LaunchError(
            f"{INFRA_SETTING}=docker needs a Docker engine and none answers ({exc}). "
            "Start one with `sudo deploy/docker/engine.sh start` (it installs docker.io when "
            "missing), or point DOCKER_HOST at yours."
        ) from exc
    return client


def resolve_image(name: str, env: Mapping[str, str], client: Any) -> str:
    """The image for backing service ``name``: the setting, the stand-in offline, or pulled."""
    choice = IMAGES[name]
    explicit = env.get(choice.setting)
    if explicit:
        return explicit
    if env.get(OFFLINE_SETTING, "").strip().lower() in {"1", "true", "yes"}:
        _require_local(client, choice.stand_in, choice.setting)
        return choice.stand_in
    if _present(client, choice.official):
        return choice.official
    try:
        client.images.pull(choice.official)
    except Exception as exc:
        # No registry here: the stand-in, if it has been built, is what this machine can run.
        if _present(client, choice.stand_in):
            return choice.stand_in
        raise LaunchError(
            f"cannot pull {choice.official} ({exc}) and its stand-in {choice.stand_in} is not "
            "built: run `make images` (no registry needed), or set "
            f"{choice.setting} to an image you have"
        ) from exc
    return choice.official


def _present(client: Any, image: str) -> bool:
    import docker.errors

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


def _require_local(client: Any, image: str, setting: str) -> None:
    if not _present(client, image):
        raise LaunchError(
            f"{OFFLINE_SETTING}=1 but the stand-in {image} is not built: run `make images` "
            f"(or set {setting})"
        )


def remove_orphans(client: Any) -> int:
    """Remove containers whose owning test session (``agora.owner-pid``) no longer runs."""
    removed = 0
    for container in client.containers.list(all=True, filters={"label": CLEANUP_LABEL}):
        owner = container.labels.get(OWNER_LABEL, "")
        if owner.isdigit() and Path(f"/proc/{owner}").exists():
            continue
        container.remove(force=True, v=True)
        removed += 1
    return removed


def poll(check: Callable[[], bool], what: str, timeout: float, container: Any = None) -> None:
    """Wait until ``check()`` is true; fail with the container's last log lines."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            logs = ""
            if container is not None:
                try:
                    logs = container.get_wrapped_container().logs(tail=30).decode(errors="replace")
                except Exception as exc:  # the container may be gone
                    logs = f"(no logs: {exc})"
            raise LaunchError(f"{what} not ready within {timeout:.0f}s\n{logs}")
        time.sleep(0.25)


def kafka_answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when a Kafka ApiVersions request gets an answer (a published port alone is not)."""
    client_id = b"agora-wait"
    correlation = 7
    body = struct.pack(">hhih", 18, 0, correlation, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = b""
            while len(header) < 8:
                chunk = sock.recv(8 - len(header))
                if not chunk:
                    return False
                header += chunk
    except OSError:
        return False
    _size, answered = struct.unpack(">ii", header)
    return bool(answered == correlation)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when ``url`` answers 200."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def exec_ok(container: Any, argv: list[str]) -> bool:
    """True when ``argv`` exits 0 inside the container."""
    try:
        code, _ = container.exec(argv)
    except Exception:
        return False
    return bool(code == 0)


# Pytest hooks, registered through agora_deploy.testing (the plugin imports them): the header
# and the summary say which infrastructure the tests ran on.
def pytest_report_header(config: pytest.Config) -> str:
    """One header line: the infrastructure the session uses."""
    if use_containers():
        offline = " (offline stand-ins)" if os.environ.get(OFFLINE_SETTING) else ""
        return f"agora infrastructure: containers ({INFRA_SETTING}=docker){offline}"
    return f"agora infrastructure: embedded processes ({INFRA_SETTING}=embedded)"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """List the containers the session ran its tests against."""
    if STARTED:
        terminalreporter.section("agora test containers")
        for name, image in sorted(STARTED.items()):
            terminalreporter.write_line(f"{name}: {image}")
