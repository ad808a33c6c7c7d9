"""Measure each service's memory and CPU on a running stack: idle, then under a short load.

The figures behind the resource requests and limits of ``deploy/k8s`` (docs/kubernetes.md).
Run it against a stack started with ``agora up --detach`` (same ``AGORA_HOME``)::

    uv run python bench/resources.py [--idle-s 30] [--load-s 30] [--concurrency 10]

Idle: every service's RSS (summed over the uvicorn process and its workers) and its CPU in
millicores averaged over ``--idle-s``. Load: ``POST /api/v1/items`` on items at
``--concurrency`` requests in flight, one registration (argon2 hash, welcome mail through the
notifier) per 20 requests, for ``--load-s``; peak RSS and mean CPU over that window. The load
goes to each service directly, not through the gateway, so the gateway's rate limit does not
shape it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil

SERVICES = ("users", "items", "notifier")


def out(line: str = "") -> None:
    """Write one line of the report to stdout."""
    sys.stdout.write(line + "\n")


@dataclass
class Sample:
    """RSS and CPU time of one service's process tree at one instant."""

    rss_bytes: int
    cpu_s: float


@dataclass
class Window:
    """Samples of one service over a measurement window."""

    samples: list[Sample] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0

    def peak_rss_mb(self) -> float:
        """The largest RSS seen, in MiB."""
        return max(s.rss_bytes for s in self.samples) / 2**20

    def mean_rss_mb(self) -> float:
        """The mean RSS, in MiB."""
        return sum(s.rss_bytes for s in self.samples) / len(self.samples) / 2**20

    def millicores(self) -> float:
        """CPU used over the window, in thousandths of a core."""
        spent = self.samples[-1].cpu_s - self.samples[0].cpu_s
        return 1000 * spent / max(self.ended - self.started, 1e-9)


def sample(pid: int) -> Sample:
    """RSS and user+system CPU seconds of ``pid`` and its children (uvicorn's workers)."""
    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    rss = 0
    cpu = 0.0
    for proc in procs:
        try:
            with proc.oneshot():
                rss += proc.memory_info().rss
                times = proc.cpu_times()
                cpu += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return Sample(rss, cpu)


async def watch(pids: dict[str, int], seconds: float) -> dict[str, Window]:
    """Sample every service each half second for ``seconds``."""
    windows = {name: Window(started=time.monotonic()) for name in pids}
    deadline = time.monotonic() + seconds
    while True:
        now = time.monotonic()
        for name, pid in pids.items():
            windows[name].samples.append(sample(pid))
            windows[name].ended = now
        if now >= deadline:
            return windows
        await asyncio.sleep(min(0.5, max(deadline - now, 0.0)))


async def register(users: httpx.AsyncClient) -> dict[str, str]:
    """Register a user and log in; return the bearer header."""
    email = f"res-{uuid.uuid4().hex[:12]}@example.com"
    password = f"res-{uuid.uuid4().hex}"
    resp = await users.post(
        "/api/v1/users", json={"email": email, "name": "Resources", "password": password}
    )
    resp.raise_for_status()
    resp = await users.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": email, "password": password},
    )
    resp.raise_for_status()
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


async def load(urls: dict[str, str], seconds: float, concurrency: int) -> dict[str, int]:
    """Drive items (and users, one registration per 20 requests) for ``seconds``."""
    counts = {"items": 0, "registrations": 0, "errors": 0}
    timeout = httpx.Timeout(10.0)
    async with (
        httpx.AsyncClient(base_url=urls["users"], timeout=timeout) as users,
        httpx.AsyncClient(base_url=urls["items"], timeout=timeout) as items,
    ):
        headers = await register(users)
        deadline = time.monotonic() + seconds

        async def worker(index: int) -> None:
            n = 0
            while time.monotonic() < deadline:
                n += 1
                try:
                    if (n + index) % 20 == 0:
                        await register(users)
                        counts["registrations"] += 1
                        continue
                    resp = await items.post(
                        "/api/v1/items",
                        json={"name": f"res-{index}-{n}", "price": "1.00", "tags": ["res"]},
                        headers=headers,
                    )
                    resp.raise_for_status()
                    counts["items"] += 1
                except httpx.HTTPError:
                    counts["errors"] += 1

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return counts


def stack_services() -> dict[str, dict[str, Any]]:
    """The running services as ``agora status --json`` reports them."""
    out = subprocess.run(
        [sys.executable, "-m", "agora_deploy", "status", "--json", "--no-metrics"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    components = json.loads(out)["components"]
    return {c["name"]: c for c in components if c["name"] in SERVICES}


async def main_async(args: argparse.Namespace) -> int:
    """Measure idle, then load; print a Markdown table."""
    services = stack_services()
    missing = [s for s in SERVICES if services.get(s, {}).get("state") != "running"]
    if missing:
        out(f"not running: {', '.join(missing)} (start `agora up --detach` first)")
        return 1
    pids = {name: int(services[name]["pid"]) for name in SERVICES}
    urls = {name: str(services[name]["url"]) for name in SERVICES}
    idle = await watch(pids, args.idle_s)
    watcher = asyncio.create_task(watch(pids, args.load_s))
    counts = await load(urls, args.load_s, args.concurrency)
    busy = await watcher
    out(f"load: {counts} in {args.load_s:g} s at concurrency {args.concurrency}")
    out()
    out("| service | idle RSS (MiB) | idle CPU (m) | load peak RSS (MiB) | load CPU (m) |")
    out("|---|---|---|---|---|")
    for name in SERVICES:
        out(
            f"| {name} | {idle[name].mean_rss_mb():.0f} | {idle[name].millicores():.0f} "
            f"| {busy[name].peak_rss_mb():.0f} | {busy[name].millicores():.0f} |"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--idle-s", type=float, default=30.0)
    parser.add_argument("--load-s", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=10)
    return asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
