"""The chaos suite's handle on one supervised stack: start, stop, kill, freeze, read."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import asyncpg

from agora_deploy.clirun import run_agora
from agora_deploy.launchers.process import free_port
from agora_deploy.stack import ComponentInfo, database_url, read_stack

#: The stack's limits raised for the load (the suite says so in its output).
STACK_ENV = {
    "GATEWAY_RATE_AVERAGE": "1000000",
    "GATEWAY_RATE_BURST": "1000000",
    "NOTIFIER_THROTTLE_LIMIT": "1000",
}


class Stack:
    """A supervised stack in its own AGORA_HOME, driven through the `agora` CLI."""

    def __init__(self, home: Path, *, workers: int = 1) -> None:
        self.home = home
        self.workers = workers
        self.gateway_port = free_port()
        #: The running scenario's tag (its accounts are ``u<i>.<tag>@chaos.example``).
        self.tag = ""

    def up(self) -> None:
        """`agora up --detach` (raises with its output when it fails)."""
        old = {k: os.environ.get(k) for k in STACK_ENV}
        os.environ.update(STACK_ENV)
        try:
            args = ["up", "--detach", "--gateway-port", str(self.gateway_port)]
            if self.workers > 1:
                args += ["--workers", str(self.workers)]
            done = run_agora(self.home, *args, timeout=300)
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        if done.returncode != 0:
            raise RuntimeError(f"agora up failed:\n{done.stdout}\n{done.stderr}")

    def down(self) -> None:
        """`agora down`."""
        run_agora(self.home, "down", timeout=180)

    def component(self, name: str) -> ComponentInfo:
        """The current stack.json entry of ``name``."""
        return {c.name: c for c in read_stack(self.home)}[name]

    def url_of(self, name: str) -> str | None:
        """The URL of ``name`` now, or None while the stack is being (re)started."""
        found = {c.name: c for c in read_stack(self.home)}.get(name)
        return found.url if found is not None and found.state == "running" else None

    @property
    def gateway(self) -> str:
        """The gateway's base URL (fixed across restarts)."""
        return f"http://127.0.0.1:{self.gateway_port}"

    def pid(self, name: str) -> int:
        """The live pid of ``name``."""
        pid = self.component(name).pid
        if pid is None:
            raise RuntimeError(f"{name} has no pid")
        return pid

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send ``sig`` to a component's process."""
        os.kill(self.pid(name), sig)

    async def freeze(self, name: str, seconds: float) -> None:
        """SIGSTOP a component for ``seconds``, then SIGCONT it."""
        pid = self.pid(name)
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(seconds)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    async def wait_running(self, names: tuple[str, ...], timeout: float = 120.0) -> None:
        """Wait until every named component runs (after a restart)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = {c.name: c for c in read_stack(self.home)}
            if all(n in now and now[n].state == "running" for n in names):
                return
            await asyncio.sleep(0.5)
        raise RuntimeError(f"{names} not running again within {timeout}s")

    def db_url(self, database: str) -> str:
        """A plain asyncpg URL of one of the stack's databases."""
        return database_url(self.component("postgres").url, database, driver="postgresql")

    async def fetch(self, database: str, sql: str, *args: object) -> list[asyncpg.Record]:
        """Run one query on one of the stack's databases."""
        conn = await asyncpg.connect(self.db_url(database), timeout=10)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()
