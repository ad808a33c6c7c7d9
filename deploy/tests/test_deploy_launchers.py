"""The embedded launchers start, answer and stop, and leave no process behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from agora_deploy.infra import Infra
from agora_deploy.launchers.kafka import start_kafka
from agora_deploy.launchers.postgres import start_postgres
from agora_deploy.launchers.process import LaunchError, free_port, pid_alive
from agora_deploy.launchers.redis import start_redis


def _wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.asyncio
async def test_postgres_starts_answers_and_stops(tmp_path: Path) -> None:
    server = start_postgres(tmp_path / "pg", tmp_path / "pg.log", port=free_port(), ephemeral=True)
    pid = server.process.pid
    assert pid is not None
    try:
        conn = await asyncpg.connect(server.url, timeout=5)
        try:
            version = await conn.fetchval("SHOW server_version_num")
            assert int(version) >= 180000
        finally:
            await conn.close()
    finally:
        server.stop()
    assert _wait_gone(pid)
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", server.port)) != 0


@pytest.mark.asyncio
async def test_redis_starts_answers_and_stops(tmp_path: Path) -> None:
    port = free_port()
    process = start_redis(tmp_path / "r", tmp_path / "r.log", port=port, die_with_parent=True)
    pid = process.pid
    assert pid is not None
    try:
        client = aioredis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
        try:
            await client.set("k", "v")
            assert await client.get("k") == b"v"
        finally:
            await client.aclose()
    finally:
        process.stop()
    assert _wait_gone(pid)


def test_port_taken_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(LaunchError, match="already in use"):
            start_redis(tmp_path / "r", tmp_path / "r.log", port=port)
        with pytest.raises(LaunchError, match="already in use"):
            start_kafka(tmp_path / "k.log", port=port)


def test_start_failure_shows_the_log_tail(tmp_path: Path) -> None:
    data = tmp_path / "not-a-dir"
    data.write_text("a file where the data folder should be")
    with pytest.raises((LaunchError, OSError)):
        start_redis(data, tmp_path / "r.log", port=free_port())


def test_broker_freeze_and_thaw(tmp_path: Path) -> None:
    broker = start_kafka(tmp_path / "k.log", port=free_port(), die_with_parent=True)

    def state() -> str:
        return Path(f"/proc/{broker.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]

    def settles(wanted: bool) -> bool:
        # The kernel applies SIGSTOP/SIGCONT asynchronously: poll briefly.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if (state() == "T") == wanted:
                return True
            time.sleep(0.02)
        return False

    try:
        broker.freeze()
        assert settles(True), "broker not stopped after SIGSTOP"
        broker.thaw()
        assert settles(False), "broker still stopped after SIGCONT"
    finally:
        broker.stop()
    assert not broker.process.alive()


def test_processes_die_with_the_run_that_started_them(tmp_path: Path) -> None:
    """A test run killed with SIGKILL leaves no broker or database behind."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from agora_deploy.infra import Infra
        infra = Infra(Path({str(tmp_path / "state")!r}), die_with_parent=True, ephemeral=True)
        infra.start_postgres(); infra.start_redis(); infra.start_kafka()
        print(" ".join(str(c.pid) for c in infra.ordered()), flush=True)
        time.sleep(120)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        pids = [int(p) for p in line.split()]
        assert len(pids) == 4  # postgres, redis, kafka and its storage
        assert all(pid_alive(p) for p in pids)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()
    assert all(_wait_gone(p, 20) for p in pids), "a launcher process outlived its parent"


def test_infra_stop_leaves_nothing(tmp_path: Path) -> None:
    infra = Infra(tmp_path / "state", die_with_parent=True, ephemeral=True)
    try:
        infra.start_postgres()
        infra.start_redis()
        infra.start_kafka()
        pids = [c.pid for c in infra.ordered() if c.pid is not None]
        assert len(pids) == 4  # postgres, redis, kafka and its storage
    finally:
        infra.stop()
    assert all(_wait_gone(p) for p in pids)
