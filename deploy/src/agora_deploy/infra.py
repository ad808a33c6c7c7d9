"""The infrastructure of one stack: PostgreSQL, Redis, the broker, the mail sink (or external)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from agora_deploy.launchers.kafka import Broker, DurableBroker, start_durable_kafka, start_kafka
from agora_deploy.launchers.mail import MailSinkProcess, start_mail
from agora_deploy.launchers.postgres import PostgresServer, pg_bin_dir, start_postgres
from agora_deploy.launchers.process import (
    LaunchError,
    ManagedProcess,
    free_port,
)
from agora_deploy.launchers.redis import start_redis
from agora_deploy.stack import (
    BROKER_STORAGE_ENV,
    COMPONENT_ORDER,
    ComponentInfo,
    write_stack,
)


class Infra:
    """Postgres, Redis, the broker and the mail sink: embedded by default, external by URL.

    ``DATABASE_URL``, ``REDIS_URL``, ``KAFKA_BOOTSTRAP_SERVERS`` and ``SMTP_URL`` (with
    ``MAIL_API_URL`` for its API) select an external service instead of starting one.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        die_with_parent: bool = False,
        ephemeral: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.die_with_parent = die_with_parent
        self.ephemeral = ephemeral
        self.env = dict(os.environ if env is None else env)
        self.components: dict[str, ComponentInfo] = {}
        self.postgres: PostgresServer | None = None
        self.redis: ManagedProcess | None = None
        self.broker: Broker | None = None
        self.durable_broker: DurableBroker | None = None
        self.mail: MailSinkProcess | None = None
        self._processes: list[tuple[str, ManagedProcess]] = []

    @property
    def log_dir(self) -> Path:
        """Where component logs go."""
        return self.state_dir / "logs"

    def _record(self, info: ComponentInfo, process: ManagedProcess | None = None) -> None:
        self.components[info.name] = info
        if process is not None:
            self._processes.append((info.name, process))

    def start_postgres(self) -> ComponentInfo:
        """Start (or adopt the external) PostgreSQL."""
        if "postgres" in self.components:
            return self.components["postgres"]
        external = self.env.get("DATABASE_URL")
        if external:
            info = ComponentInfo("postgres", external, None, "external")
            self._record(info)
            return info
        self.postgres = start_postgres(
            self.state_dir / "postgres",
            self.log_dir / "postgres.log",
            port=free_port(),
            die_with_parent=self.die_with_parent,
            ephemeral=self.ephemeral,
        )
        info = ComponentInfo(
            "postgres",
            self.postgres.url,
            self.postgres.process.pid,
            "running",
            {"data_dir": str(self.postgres.data_dir)},
        )
        self._record(info, self.postgres.process)
        return info

    def start_redis(self) -> ComponentInfo:
        """Start (or adopt the external) Redis."""
        if "redis" in self.components:
            return self.components["redis"]
        external = self.env.get("REDIS_URL")
        if external:
            info = ComponentInfo("redis", external, None, "external")
            self._record(info)
            return info
        port = free_port()
        self.redis = start_redis(
            self.state_dir / "redis",
            self.log_dir / "redis.log",
            port=port,
            die_with_parent=self.die_with_parent,
        )
        info = ComponentInfo("redis", f"redis://127.0.0.1:{port}/0", self.redis.pid, "running")
        self._record(info, self.redis)
        return info

    def start_kafka(self) -> ComponentInfo:
        """Start (or adopt the external) Kafka-protocol broker."""
        if "kafka" in self.components:
            return self.components["kafka"]
        external = self.env.get("KAFKA_BOOTSTRAP_SERVERS")
        if external:
            info = ComponentInfo("kafka", external, None, "external")
            self._record(info)
            return info
        if self.env.get(BROKER_STORAGE_ENV, "s3") == "memory":
            self.broker = start_kafka(
                self.log_dir / "kafka.log", port=free_port(), die_with_parent=self.die_with_parent
            )
            storage = "memory"
        else:
            durable = start_durable_kafka(
                self.state_dir / "kafka",
                self.log_dir,
                port=free_port(),
                die_with_parent=self.die_with_parent,
            )
            self.durable_broker, self.broker = durable, durable.broker
            self._record(
                ComponentInfo(
                    "storage",
                    durable.storage.endpoint.url,
                    durable.storage.process.pid,
                    "running",
                    {"for": "kafka", "data_dir": str(durable.storage.data_dir)},
                ),
                durable.storage.process,
            )
            storage = "s3"
        info = ComponentInfo(
            "kafka",
            self.broker.bootstrap,
            self.broker.pid,
            "running",
            {"flavour": "tansu", "enable_idempotence": "false", "storage": storage},
        )
        self._record(info, self.broker.process)
        return info

    def start_mail(self) -> ComponentInfo:
        """Start (or adopt the external) mail sink."""
        if "mail" in self.components:
            return self.components["mail"]
        external = self.env.get("SMTP_URL")
        if external:
            api = self.env.get("MAIL_API_URL", "")
            info = ComponentInfo("mail", api, None, "external", {"smtp_url": external})
            self._record(info)
            return info
        self.mail = start_mail(
            self.log_dir / "mail.log",
            smtp_port=free_port(),
            http_port=free_port(),
            die_with_parent=self.die_with_parent,
            data_dir=self.state_dir / "mail",
        )
        info = ComponentInfo(
            "mail",
            self.mail.api_url,
            self.mail.process.pid,
            "running",
            {"smtp_url": self.mail.smtp_url},
        )
        self._record(info, self.mail.process)
        return info

    def start_all(self) -> None:
        """Start the four backing services in order."""
        self.start_postgres()
        self.start_redis()
        self.start_kafka()
        self.start_mail()

    def add_process(self, info: ComponentInfo, process: ManagedProcess) -> None:
        """Record a process started on top of the infrastructure (a service, the gateway)."""
        self._record(info, process)

    def processes(self) -> list[tuple[str, ManagedProcess]]:
        """Every process started here, in start order, by component name."""
        return list(self._processes)

    def ordered(self) -> list[ComponentInfo]:
        """Components in stack order."""
        rank = {name: i for i, name in enumerate(COMPONENT_ORDER)}
        return sorted(self.components.values(), key=lambda c: rank.get(c.name, 99))

    def write(self) -> None:
        """Write stack.json for what runs now."""
        write_stack(self.state_dir, self.ordered())

    def stop(self) -> None:
        """Stop everything started here, in reverse order; remove throwaway data."""
        for name, process in reversed(self._processes):
            if name == "kafka" and self.broker is not None:
                self.broker.stop()
            elif name == "storage" and self.durable_broker is not None:
                self.durable_broker.storage.stop()
            else:
                process.stop(timeout=15)
            if name in self.components:
                self.components[name].state = "stopped"
        self._processes.clear()
        if self.ephemeral and self.postgres is not None:
            shutil.rmtree(self.postgres.data_dir, ignore_errors=True)

    def create_database(self, name: str) -> None:
        """Create database ``name`` on the Postgres server if it does not exist."""
        server = self.start_postgres().url
        if not name.replace("_", "").isalnum():
            raise LaunchError(f"postgres: invalid database name {name!r}")
        psql = str(pg_bin_dir() / "psql")
        exists = subprocess.run(  # noqa: S603
            [psql, server, "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],  # noqa: S608 - name checked
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if exists.returncode != 0:
            raise LaunchError(f"postgres: cannot query {server}: {exists.stderr.strip()}")
        if exists.stdout.strip() == "1":
            return
        result = subprocess.run(  # noqa: S603
            [psql, server, "-c", f'CREATE DATABASE "{name}"'],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0 and "already exists" not in result.stderr:
            raise LaunchError(f"postgres: CREATE DATABASE {name} failed: {result.stderr.strip()}")
