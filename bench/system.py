"""The system under test: every process as `agora up` starts it, plus the bare app."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from agora_contract import topics
from agora_deploy.infra import Infra
from agora_deploy.launchers.process import ManagedProcess, free_port
from agora_deploy.services import available_services
from agora_deploy.stack import ComponentInfo, database_url
from agora_deploy.up import UpOptions, bring_up
from aiokafka import AIOKafkaConsumer

if TYPE_CHECKING:
    # mypy names files by package path from the repo root (explicit_package_bases); run as a
    # script, this folder is on sys.path and each module here is a top-level one.
    from bench import common, scaling, startup
else:
    import common
    import scaling
    import startup


@dataclass(frozen=True)
class Stack:
    """Where the started system listens."""

    users: str
    items: str
    notifier: str
    gateway: str
    mail: str
    smtp: str
    kafka: str
    bare: str
    postgres: str
    #: The items process started with ``--workers N`` ("" unless the scaling scenario runs).
    items_workers: str = ""
    #: Stops that process (after the wrk rounds, so it never runs under the other scenarios).
    stop_items_workers: Callable[[], None] | None = None


def bare_argv(port: int) -> list[str]:
    """The bare app's command line: the services' uvicorn flags, one worker."""
    return [
        sys.executable, "-m", "uvicorn", "--factory", "bare:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
    ]  # fmt: skip


async def items_partitions(bootstrap: str) -> set[int]:
    """The partitions of items.events (the raw topic gets as many)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await asyncio.wait_for(consumer.start(), 15)
    try:
        await consumer.topics()
        return consumer.partitions_for_topic(topics.ITEMS_EVENTS) or {0}
    finally:
        await consumer.stop()


def items_database(server_url: str) -> str:
    """A plain asyncpg DSN of the items database on the stack's Postgres."""
    spec = next(s for s in available_services() if s.name == "items")
    return database_url(server_url, spec.database, driver="postgresql")


def start_stack(
    state_dir: Path, options: common.Options
) -> tuple[Infra, Stack, startup.StartTimes, dict[str, float]]:
    """Start the whole system as `agora up` does (each step timed), plus the bare app and, for
    the scaling scenario, a second items process with ``--workers N``; the caller stops it."""
    os.environ["GATEWAY_RATE_AVERAGE"] = common.GATEWAY_RATE
    os.environ["GATEWAY_RATE_BURST"] = common.GATEWAY_RATE
    os.environ["NOTIFIER_THROTTLE_LIMIT"] = common.THROTTLE
    # Always the embedded services: thousands of benchmark items must never land in an
    # external database or broker that DATABASE_URL and friends happen to name.
    env = {k: v for k, v in os.environ.items() if k not in common.EXTERNAL}
    infra = startup.TimedInfra(state_dir, die_with_parent=True, ephemeral=True, env=env)
    times = infra.times = startup.StartTimes()
    rss: dict[str, float] = {}
    items_workers = ""
    workers_process: ManagedProcess | None = None
    try:
        began = time.perf_counter()
        with startup.timed_bring_up(times):
            bring_up(infra, UpOptions(gateway_port=free_port()))
        times.total_s = time.perf_counter() - began
        if "startup" in options.only:
            rss = startup.idle_rss_mb(infra)
        infra.create_database(common.BARE_DATABASE)
        server = infra.components["postgres"].url
        port = free_port()
        bare = ManagedProcess(
            "bare",
            bare_argv(port),
            infra.log_dir / "bare.log",
            env={**env, "BENCH_BARE_DATABASE_URL": database_url(server, common.BARE_DATABASE)},
            cwd=common.BENCH,
            die_with_parent=True,
            ports=(port,),
        )
        bare.start()
        info = ComponentInfo("bare", f"http://127.0.0.1:{port}", bare.pid, "running")
        infra.add_process(info, bare)
        wait_http(f"http://127.0.0.1:{port}/health", bare)
        if "scaling" in options.only:
            items_workers, workers_process = scaling.start_items_workers(infra, options.workers)
    except BaseException:
        infra.stop()
        raise
    urls = {name: info.url for name, info in infra.components.items()}
    stack = Stack(
        users=urls["users"],
        items=urls["items"],
        notifier=urls["notifier"],
        gateway=urls["gateway"],
        mail=urls["mail"],
        smtp=infra.components["mail"].text("smtp_url"),
        kafka=urls["kafka"],
        bare=f"http://127.0.0.1:{port}",
        postgres=infra.components["postgres"].url,
        items_workers=items_workers,
        stop_items_workers=workers_process.stop if workers_process is not None else None,
    )
    return infra, stack, times, rss


def wait_http(url: str, process: ManagedProcess, *, timeout: float = 60.0) -> None:
    """Wait until ``url`` answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        if not process.alive():
            raise RuntimeError(f"the bare app exited; see its log {process.log_path}")
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout}s")
