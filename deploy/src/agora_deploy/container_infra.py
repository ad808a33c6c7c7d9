"""The integration tests' infrastructure on containers: PostgreSQL, Redis, Kafka, the mail sink."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agora_deploy.infra import Infra
from agora_deploy.launchers.kafka import Broker
from agora_deploy.launchers.process import LaunchError, free_port
from agora_deploy.stack import ComponentInfo

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer
from agora_deploy.containers import (
    CLEANUP_LABEL,
    IMAGES,
    OWNER_LABEL,
    POSTGRES_PASSWORD,
    STARTED,
    docker_client,
    exec_ok,
    http_ok,
    kafka_answers,
    poll,
    remove_orphans,
    resolve_image,
)


class ContainerBroker(Broker):
    """The broker in a container; freeze and thaw pause and unpause it (the cgroup freezer)."""

    def __init__(self, container: DockerContainer, port: int) -> None:
        # No ManagedProcess: the broker is a container, not a child process.
        self.container = container
        self.port = port

    @property
    def pid(self) -> int:
        """The broker's pid on the host (as the kernel sees it)."""
        wrapped = self.container.get_wrapped_container()
        wrapped.reload()
        return int(wrapped.attrs["State"]["Pid"])

    def freeze(self) -> None:
        """Pause the container: the broker stops answering, its connections stay open."""
        self.container.get_wrapped_container().pause()

    def thaw(self) -> None:
        """Unpause the container."""
        wrapped = self.container.get_wrapped_container()
        wrapped.reload()
        if wrapped.status == "paused":
            wrapped.unpause()

    def stop(self) -> None:
        """Remove the container (unpausing it first)."""
        self.thaw()
        self.container.stop()


class ContainerInfra(Infra):
    """:class:`Infra` whose backing services are containers (external URLs still win)."""

    def __init__(self, state_dir: Path, *, env: dict[str, str] | None = None) -> None:
        super().__init__(state_dir, die_with_parent=True, ephemeral=True, env=env)
        self.client = docker_client()
        remove_orphans(self.client)
        self.session = uuid.uuid4().hex[:12]
        self.containers: list[DockerContainer] = []
        self.images: dict[str, str] = {}

    def _container(self, name: str) -> DockerContainer:
        from testcontainers.core.container import DockerContainer

        image = resolve_image(name, self.env, self.client)
        self.images[name] = image
        container = DockerContainer(image)
        container.with_name(f"agora-test-{name}-{self.session}")
        # testcontainers adds its own (org.testcontainers=true) to these.
        labels = {
            CLEANUP_LABEL: "true",
            OWNER_LABEL: str(os.getpid()),
            "agora.session": self.session,
        }
        container.with_kwargs(labels=labels)
        return container

    def _started(self, container: DockerContainer) -> DockerContainer:
        container.start()
        self.containers.append(container)
        return container

    def _record(self, info: ComponentInfo, process: Any = None) -> None:
        super()._record(info, process)
        if "image" in info.extra:
            STARTED[info.name] = str(info.extra["image"])

    def _record_container(
        self, name: str, url: str, container: DockerContainer, extra: dict[str, str | int]
    ) -> ComponentInfo:
        info = ComponentInfo(name, url, None, "external", {"image": self.images[name], **extra})
        self._record(info)
        return info

    def start_postgres(self) -> ComponentInfo:
        """Start PostgreSQL in a container (or adopt ``DATABASE_URL``)."""
        if "postgres" in self.components or self.env.get("DATABASE_URL"):
            return super().start_postgres()
        container = self._container("postgres")
        container.with_env("POSTGRES_PASSWORD", POSTGRES_PASSWORD)
        container.with_exposed_ports(5432)
        # The same tuning the embedded server gets: many test databases, no durability cost.
        container.with_command(
            "postgres -c max_connections=300 -c fsync=off -c synchronous_commit=off"
        )
        self._started(container)
        # pg_isready over TCP: the image's init phase runs a socket-only server.
        probe = ["pg_isready", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres"]
        poll(lambda: exec_ok(container, probe), "postgres", 90, container)
        host = container.get_container_host_ip()
        port = container.get_exposed_port(5432)
        url = f"postgresql://postgres:{POSTGRES_PASSWORD}@{host}:{port}/postgres"
        return self._record_container("postgres", url, container, {})

    def start_redis(self) -> ComponentInfo:
        """Start Redis in a container (or adopt ``REDIS_URL``)."""
        if "redis" in self.components or self.env.get("REDIS_URL"):
            return super().start_redis()
        container = self._container("redis")
        container.with_exposed_ports(6379)
        container.with_command("redis-server --save '' --appendonly no")
        self._started(container)
        poll(lambda: exec_ok(container, ["redis-cli", "ping"]), "redis", 60, container)
        host = container.get_container_host_ip()
        port = container.get_exposed_port(6379)
        return self._record_container("redis", f"redis://{host}:{port}/0", container, {})

    def start_kafka(self) -> ComponentInfo:
        """Start the broker in a container (or adopt ``KAFKA_BOOTSTRAP_SERVERS``)."""
        if "kafka" in self.components or self.env.get("KAFKA_BOOTSTRAP_SERVERS"):
            return super().start_kafka()
        # The broker advertises the address clients must dial: the published host port, so it
        # is chosen first and published as itself.
        port = free_port()
        container = self._container("kafka")
        tansu = self.images["kafka"] == IMAGES["kafka"].stand_in or "tansu" in self.images["kafka"]
        if tansu:
            container.with_command(
                "broker --listener-url tcp://0.0.0.0:9092 "
                f"--advertised-listener-url tcp://127.0.0.1:{port} "
                "--storage-engine memory://tansu/"
            )
        else:
            for key, value in _kraft_env(port).items():
                container.with_env(key, value)
        container.with_bind_ports(9092, port)
        self._started(container)
        poll(lambda: kafka_answers("127.0.0.1", port), "kafka", 120, container)
        self.broker = ContainerBroker(container, port)
        flavour: dict[str, str | int] = (
            {"flavour": "tansu", "enable_idempotence": "false"}
            if tansu
            else {"flavour": "kafka", "enable_idempotence": "true"}
        )
        return self._record_container("kafka", f"127.0.0.1:{port}", container, flavour)

    def start_mail(self) -> ComponentInfo:
        """Start the mail sink (Mailpit or its stand-in) in a container (or adopt ``SMTP_URL``)."""
        if "mail" in self.components or self.env.get("SMTP_URL"):
            return super().start_mail()
        container = self._container("mail")
        container.with_exposed_ports(1025, 8025)
        self._started(container)
        host = container.get_container_host_ip()
        api = f"http://{host}:{container.get_exposed_port(8025)}"
        poll(lambda: http_ok(f"{api}/readyz"), "mail sink", 60, container)
        smtp = f"smtp://{host}:{container.get_exposed_port(1025)}"
        return self._record_container("mail", api, container, {"smtp_url": smtp})

    def stop(self) -> None:
        """Remove every container started here, newest first."""
        super().stop()
        errors: list[str] = []
        if isinstance(self.broker, ContainerBroker):
            try:
                self.broker.thaw()
            except Exception as exc:
                errors.append(f"kafka: {exc}")
        for container in reversed(self.containers):
            try:
                container.stop()
            except Exception as exc:
                errors.append(str(exc))
        self.containers.clear()
        for info in self.components.values():
            info.state = "stopped"
        if errors:
            raise LaunchError("could not remove every test container: " + "; ".join(errors))


def _kraft_env(port: int) -> dict[str, str]:
    """A single-node KRaft Apache Kafka advertising ``127.0.0.1:port`` to the host."""
    return {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{port}",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    }
