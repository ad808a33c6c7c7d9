"""Benchmark the whole system on this machine: throughput and latency as ratios to a baseline.

Starts every process as ``agora up`` does (in a temporary folder, each child dying with this
process), drives it from 127.0.0.1 with a bounded async httpx load generator, stops it all in
``finally``, prints a table and writes ``bench/results/<timestamp>.json`` and ``latest.md``.

Run it as ``make bench`` or ``uv run python bench/run.py [--requests N] [--concurrency C]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from agora_contract import Envelope, ItemCreated, topics
from agora_deploy.launchers.process import free_port
from agora_deploy.observe import service_gauges
from agora_deploy.stack import Infra
from agora_deploy.up import UpOptions, bring_up
from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
#: High enough that the gateway's per-IP rate limit never answers 429 to the load generator.
GATEWAY_RATE = "1000000"
#: The notifier sends at most this many emails per recipient per minute (its default is 30,
#: and registration takes two): one account per this many items of the mail sample.
MAIL_PER_ACCOUNT = 25
#: The variables that point `agora up` at external services (ignored here).
EXTERNAL = frozenset(
    {"DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "SMTP_URL", "MAIL_API_URL"}
)
#: Wide enough for the table when the output is not a terminal (make bench | tee ...).
console = Console(width=None if sys.stdout.isatty() else 130)

Send = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


@dataclass(frozen=True)
class Options:
    """What one run measures, and its bounds."""

    requests: int
    concurrency: int
    max_seconds: float
    rounds: int
    events: int
    event_rate: float
    mail_sample: int
    out: Path


@dataclass
class Result:
    """One measured scenario: counts, throughput and latency percentiles."""

    name: str
    what: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float] = field(repr=False)
    #: CPU seconds this process (the load generator) spent during the scenario.
    client_cpu_s: float = 0.0
    #: Throughput of each round, to show how much one scenario moved during the run.
    round_rps: list[float] = field(default_factory=list)

    @property
    def rps(self) -> float:
        """Successful requests per second of wall time (0 when nothing was timed)."""
        ok = len(self.latencies_ms)
        return ok / self.seconds if self.seconds > 0 and self.requests else 0.0

    def add(self, part: Result) -> None:
        """Fold one round of the same scenario into this result."""
        self.requests += part.requests
        self.errors += part.errors
        self.seconds += part.seconds
        self.latencies_ms += part.latencies_ms
        self.client_cpu_s += part.client_cpu_s
        self.round_rps.append(round(part.rps, 1))

    def pct(self, q: float) -> float:
        """The ``q`` quantile (0..1) of the latencies in ms, nearest rank; NaN if none."""
        if not self.latencies_ms:
            return math.nan
        ordered = sorted(self.latencies_ms)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    def summary(self, baseline: Result) -> dict[str, Any]:
        """The figures of this scenario and their ratios to ``baseline``."""
        p50, p99 = self.pct(0.5), self.pct(0.99)
        return {
            "name": self.name,
            "what": self.what,
            "requests": self.requests,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "rps": round(self.rps, 1) if self.requests else None,
            "rps_ratio": _ratio(self.rps, baseline.rps) if self.requests else None,
            "p50_ms": _round(p50),
            "p50_ratio": _ratio(p50, baseline.pct(0.5)),
            "p99_ms": _round(p99),
            "p99_ratio": _ratio(p99, baseline.pct(0.99)),
            "client_cpu": _ratio(self.client_cpu_s, self.seconds) if self.requests else None,
            "round_rps": self.round_rps,
            "samples": len(self.latencies_ms),
        }


def _round(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 2)


def _ratio(value: float, base: float) -> float | None:
    if math.isnan(value) or math.isnan(base) or base == 0:
        return None
    return round(value / base, 3)


# --- load generator -------------------------------------------------------------------------


async def hammer(
    client: httpx.AsyncClient,
    send: Send,
    *,
    name: str,
    what: str,
    requests: int,
    concurrency: int,
    max_seconds: float,
    expect: int = 200,
) -> Result:
    """Send at most ``requests`` requests from ``concurrency`` workers for at most ``max_seconds``.

    A worker starts no request after the deadline; one in flight ends within the client's
    timeout. An unexpected status or a transport error counts as an error, not a latency.
    """
    latencies: list[float] = []
    errors = 0
    issued = 0
    cpu = time.process_time()
    start = time.perf_counter()
    deadline = start + max_seconds

    async def worker() -> None:
        nonlocal errors, issued
        while issued < requests and time.perf_counter() < deadline:
            index = issued
            issued += 1
            began = time.perf_counter()
            try:
                resp = await send(client, index)
            except httpx.HTTPError:
                errors += 1
                continue
            if resp.status_code == expect:
                latencies.append((time.perf_counter() - began) * 1000)
            else:
                errors += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return Result(name, what, issued, errors, elapsed, latencies, time.process_time() - cpu)


@dataclass(frozen=True)
class Scenario:
    """One kind of request, sent by ``hammer``."""

    name: str
    what: str
    client: httpx.AsyncClient
    send: Send
    expect: int = 200


async def interleave(
    scenarios: list[Scenario], options: Options, between: Callable[[], Awaitable[None]]
) -> list[Result]:
    """Measure the scenarios in turns, round after round, so drift hits each one alike.

    Round 0 is a warm-up (a tenth of the requests, discarded); then each scenario gets
    ``rounds`` turns of an equal share of its requests and wall time. ``between`` runs after
    each round (a drain of the work the writes left behind).
    """
    share = max(1, options.requests // options.rounds)
    warm = max(options.concurrency, options.requests // 10)
    results = {sc.name: Result(sc.name, sc.what, 0, 0, 0.0, []) for sc in scenarios}
    for turn in range(options.rounds + 1):
        for sc in scenarios:
            part = await hammer(
                sc.client,
                sc.send,
                name=sc.name,
                what=sc.what,
                requests=warm if turn == 0 else share,
                concurrency=options.concurrency,
                max_seconds=options.max_seconds / options.rounds,
                expect=sc.expect,
            )
            if turn == 0:
                continue
            results[sc.name].add(part)
            console.print(
                f"  round {turn} {sc.name}: {part.rps:,.0f} req/s, "
                f"p50 {part.pct(0.5):.1f} ms, p99 {part.pct(0.99):.1f} ms, "
                f"{part.errors} errors"
            )
        await between()
    return list(results.values())


# --- accounts and items ---------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """A registered user with a bearer token."""

    user_id: int
    email: str
    headers: dict[str, str]


async def register(users: httpx.AsyncClient, label: str) -> Account:
    """Register a user (``POST /api/v1/users``) and log in (``POST /api/v1/auth/token``)."""
    email = f"bench-{label}-{uuid.uuid4().hex[:10]}@example.com"
    password = f"bench-{uuid.uuid4().hex}"
    resp = await users.post(
        "/api/v1/users", json={"email": email, "name": "Bench", "password": password}
    )
    resp.raise_for_status()
    user_id = int(resp.json()["id"])
    resp = await users.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": email, "password": password},
    )
    resp.raise_for_status()
    return Account(user_id, email, {"Authorization": f"Bearer {resp.json()['access_token']}"})


def item_body(name: str) -> dict[str, Any]:
    """A small, valid ``ItemCreate`` body."""
    return {"name": name, "price": "19.90", "tags": ["bench"], "description": "a bench item"}


async def create_item(items: httpx.AsyncClient, account: Account, name: str) -> int:
    """List one item; return its id."""
    resp = await items.post("/api/v1/items", json=item_body(name), headers=account.headers)
    resp.raise_for_status()
    return int(resp.json()["id"])


async def wait_drained(items_url: str, notifier_url: str, *, timeout: float = 60.0) -> float:
    """Wait until the items outbox is published and the notifier has caught up; return secs."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        outbox, lag = await asyncio.gather(
            asyncio.to_thread(service_gauges, items_url),
            asyncio.to_thread(service_gauges, notifier_url),
        )
        if outbox.get("outbox_backlog") == "0" and lag.get("consumer_lag", "0") == "0":
            return time.monotonic() - start
        await asyncio.sleep(0.25)
    raise RuntimeError(f"backlog not drained within {timeout}s: items {outbox}, notifier {lag}")


# --- end-to-end latencies -------------------------------------------------------------------


async def event_latency(
    items: httpx.AsyncClient, bootstrap: str, account: Account, options: Options
) -> Result:
    """Time from ``POST /api/v1/items`` answering 201 to its ``ItemCreated`` on items.events.

    Items are created at a fixed rate (open loop, at most ``concurrency`` in flight), so the
    figure is the outbox relay's latency at that rate, not a queue the benchmark built.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
        request_timeout_ms=10_000,
    )
    await asyncio.wait_for(consumer.start(), 15)
    seen: dict[str, float] = {}
    created: dict[str, float] = {}
    finished = asyncio.Event()
    reader: asyncio.Task[None] | None = None
    errors = 0
    try:
        await consumer.topics()
        parts = [
            TopicPartition(topics.ITEMS_EVENTS, p)
            for p in sorted(consumer.partitions_for_topic(topics.ITEMS_EVENTS) or ())
        ]
        if not parts:
            raise RuntimeError(f"{topics.ITEMS_EVENTS} has no partitions")
        consumer.assign(parts)
        for tp, end in (await consumer.end_offsets(parts)).items():
            consumer.seek(tp, end)

        async def read() -> None:
            # Until every created item's event is seen (an event may beat its 201 here).
            while not (finished.is_set() and created.keys() <= seen.keys()):
                batch = await consumer.getmany(timeout_ms=100)
                now = time.perf_counter()
                for record in (r for rs in batch.values() for r in rs):
                    envelope = Envelope.from_bytes(record.value or b"")
                    if envelope.type == ItemCreated.event_type:
                        seen.setdefault(envelope.subject, now)

        reader = asyncio.create_task(read())
        gate = asyncio.Semaphore(options.concurrency)

        async def one(index: int) -> None:
            nonlocal errors
            async with gate:
                try:
                    item_id = await create_item(items, account, f"bench-event-{index}")
                except httpx.HTTPError:
                    errors += 1
                    return
                created[str(item_id)] = time.perf_counter()

        start = time.perf_counter()
        tasks = []
        for index in range(options.events):
            tasks.append(asyncio.create_task(one(index)))
            await asyncio.sleep(
                max(0.0, start + (index + 1) / options.event_rate - time.perf_counter())
            )
            if time.perf_counter() - start > options.max_seconds:
                break
        await asyncio.gather(*tasks)
        finished.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, 30)
        elapsed = time.perf_counter() - start
    finally:
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        await asyncio.wait_for(consumer.stop(), 10)
    lost = [i for i in created if i not in seen]
    latencies = [(seen[i] - t) * 1000 for i, t in created.items() if i in seen]
    what = f"201 -> ItemCreated on {topics.ITEMS_EVENTS}, {options.event_rate:g} items/s"
    result = Result("POST -> event", what, 0, errors + len(lost), elapsed, latencies)
    console.print(
        f"  events: p50 {result.pct(0.5):.1f} ms, p99 {result.pct(0.99):.1f} ms, "
        f"{len(latencies)} seen, {len(lost)} not seen, {errors} create errors"
    )
    return result


async def wait_mail(
    mail: httpx.AsyncClient, address: str, fragment: str, *, timeout: float = 30.0
) -> float:
    """Poll the mail sink every 20 ms until a message to ``address`` has ``fragment``."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        resp = await mail.get("/api/v1/messages", params={"limit": 100})
        resp.raise_for_status()
        for message in resp.json()["messages"]:
            people = [str(p.get("Address", "")).lower() for p in message.get("To") or []]
            subject = str(message.get("Subject", "")).lower()
            if address.lower() in people and fragment.lower() in subject:
                return time.perf_counter()
        await asyncio.sleep(0.02)
    raise TimeoutError(f"no mail {fragment!r} to {address} within {timeout}s")


async def mail_latency(
    users: httpx.AsyncClient,
    items: httpx.AsyncClient,
    mail: httpx.AsyncClient,
    *,
    sample: int,
    max_seconds: float,
) -> Result:
    """Time from ``POST /api/v1/items`` answering 201 to the "item listed" email in the sink.

    One item at a time, so each figure is the whole path on an idle system: outbox, relay,
    broker, notifier, SMTP. Each account first receives its welcome mail, so the notifier
    knows its address before its items arrive.
    """
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    account: Account | None = None
    for index in range(sample):
        if time.perf_counter() - start > max_seconds:
            break
        if index % MAIL_PER_ACCOUNT == 0:
            account = await register(users, "mail")
            await wait_mail(mail, account.email, "welcome")
        assert account is not None
        name = f"bench-mail-{index}-{uuid.uuid4().hex[:6]}"
        try:
            await create_item(items, account, name)
            created = time.perf_counter()
            arrived = await wait_mail(mail, account.email, f'"{name}" is listed')
        except (httpx.HTTPError, TimeoutError):
            errors += 1
            continue
        latencies.append((arrived - created) * 1000)
    elapsed = time.perf_counter() - start
    what = "201 -> 'is listed' email in the sink, one at a time (polled every 20 ms)"
    result = Result("POST -> email", what, 0, errors, elapsed, latencies)
    console.print(
        f"  mail: p50 {result.pct(0.5):.1f} ms, p99 {result.pct(0.99):.1f} ms, {errors} errors"
    )
    return result


# --- the run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    """Where the started system listens."""

    users: str
    items: str
    notifier: str
    gateway: str
    mail: str
    kafka: str


async def run_scenarios(stack: Stack, options: Options) -> tuple[list[Result], dict[str, Any]]:
    """Measure every scenario in order; return the results and a few side figures."""
    limits = httpx.Limits(
        max_connections=options.concurrency, max_keepalive_connections=options.concurrency
    )

    def client(base_url: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=base_url, timeout=10, limits=limits)

    async with (
        client(stack.users) as users,
        client(stack.items) as items,
        client(stack.notifier) as notifier,
        client(stack.gateway) as gateway,
        client(stack.mail) as mail,
    ):
        load = await register(users, "load")
        # The load account opts out of item mail: its thousands of items must not turn into
        # thousands of emails competing for the two cores with what is measured next.
        resp = await notifier.put(
            "/api/v1/notifications/preferences", json={"item_mail": False}, headers=load.headers
        )
        resp.raise_for_status()
        item_id = await create_item(items, load, "bench-target")
        path = f"/api/v1/items/{item_id}"

        async def live(c: httpx.AsyncClient, _: int) -> httpx.Response:
            return await c.get("/health/live")

        async def read(c: httpx.AsyncClient, _: int) -> httpx.Response:
            return await c.get(path)

        async def write(c: httpx.AsyncClient, i: int) -> httpx.Response:
            return await c.post("/api/v1/items", json=item_body(f"bench-{i}"), headers=load.headers)

        drains: list[float] = []

        async def drain() -> None:
            # Writes leave work behind (relay, notifier): let it finish before the next turn.
            drains.append(await wait_drained(stack.items, stack.notifier))

        scenarios = [
            Scenario("baseline", "GET /health/live, items direct", items, live),
            Scenario("GET direct", f"GET {path}, items direct", items, read),
            Scenario("GET gateway", f"GET {path} through Traefik", gateway, read),
            Scenario(
                "POST direct",
                "POST /api/v1/items (row + outbox row in one transaction), bearer token",
                items,
                write,
                expect=201,
            ),
        ]
        results = await interleave(scenarios, options, drain)
        console.print(f"  slowest drain of outbox and notifier after a round: {max(drains):.1f} s")
        results.append(await event_latency(items, stack.kafka, load, options))
        results.append(
            await mail_latency(
                users, items, mail, sample=options.mail_sample, max_seconds=options.max_seconds
            )
        )
    return results, {"slowest drain after a round, s": round(max(drains), 2)}


def start_stack(state_dir: Path) -> tuple[Infra, Stack]:
    """Start the whole system as `agora up` does, in ``state_dir``; the caller stops it."""
    os.environ["GATEWAY_RATE_AVERAGE"] = GATEWAY_RATE
    os.environ["GATEWAY_RATE_BURST"] = GATEWAY_RATE
    # Always the embedded services: thousands of benchmark items must never land in an
    # external database or broker that DATABASE_URL and friends happen to name.
    env = {k: v for k, v in os.environ.items() if k not in EXTERNAL}
    infra = Infra(state_dir, die_with_parent=True, ephemeral=True, env=env)
    try:
        bring_up(infra, UpOptions(gateway_port=free_port()))
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
        kafka=urls["kafka"],
    )
    return infra, stack


def git_commit() -> str | None:
    """The short commit of the working tree, when git is there."""
    git = shutil.which("git")
    if git is None:
        return None
    out = subprocess.run(  # noqa: S603 - fixed argv, our own repository
        [git, "rev-parse", "--short", "HEAD"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return out.stdout.strip() or None


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "%":
        return f"{value:.0%}"
    return f"{value:,.1f}"


ROW_KEYS = (
    ("requests", ""),
    ("errors", ""),
    ("rps", ""),
    ("rps_ratio", "x"),
    ("p50_ms", ""),
    ("p50_ratio", "x"),
    ("p99_ms", ""),
    ("p99_ratio", "x"),
    ("client_cpu", "%"),
)
HEADERS = (
    "scenario", "n", "errors", "req/s", "x base", "p50 ms", "x base", "p99 ms", "x base",
    "client CPU",
)  # fmt: skip


def rows(report: dict[str, Any]) -> list[list[str]]:
    """The table's rows as text (latency-only scenarios show their sample size as n)."""
    out = []
    for s in report["scenarios"]:
        cells = [s["name"]]
        for key, unit in ROW_KEYS:
            value = s[key]
            if key == "requests" and not value:
                value = s["samples"]
            cells.append(str(value) if key in {"requests", "errors"} else _fmt(value, unit))
        out.append(cells)
    return out


def print_table(report: dict[str, Any]) -> None:
    """Print the results with their ratios to the baseline."""
    table = Table(title=f"Agora bench {report['started_at']} (ratios: x the baseline)")
    for header in HEADERS:
        table.add_column(header, justify="left" if header == "scenario" else "right")
    for cells in rows(report):
        table.add_row(*cells)
    console.print(table)
    for key, value in report["derived"].items():
        console.print(f"  {key}: {value}")


def markdown(report: dict[str, Any]) -> str:
    """The results as a markdown document (``bench/results/latest.md``)."""
    o = report["options"]
    lines = [
        f"# Agora bench, {report['started_at']}",
        "",
        f"Commit `{report['commit']}`, {report['cpus']} CPUs, Python {report['python']}; "
        f"{o['requests']} requests per scenario at concurrency {o['concurrency']} "
        f"in {o['rounds']} interleaved rounds (after a warm-up); {o['events']} items at "
        f"{o['event_rate']:g}/s for the event latency; {o['mail_sample']} emails. "
        f"Stack started in {report['startup_s']:.1f} s, whole run {report['total_s']:.1f} s.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(HEADERS) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows(report)]
    lines += ["", "Derived:", ""]
    lines += [f"- {key}: {value}" for key, value in report["derived"].items()]
    lines += ["", "What each scenario is:", ""]
    lines += [f"- **{s['name']}**: {s['what']}" for s in report["scenarios"]]
    lines += ["", "Absolute numbers vary with the machine and its load; read the ratios.", ""]
    return "\n".join(lines)


def derive(results: list[Result]) -> dict[str, Any]:
    """Figures that compare two scenarios other than the baseline."""
    by = {r.name: r for r in results}
    base, direct, gateway, write = (
        by[name] for name in ("baseline", "GET direct", "GET gateway", "POST direct")
    )
    rounds = base.round_rps
    return {
        "gateway throughput (gateway / direct req/s)": _ratio(gateway.rps, direct.rps),
        "gateway p50 latency (gateway / direct)": _ratio(gateway.pct(0.5), direct.pct(0.5)),
        "gateway p50 overhead, ms": _round(gateway.pct(0.5) - direct.pct(0.5)),
        "write throughput (POST / GET direct req/s)": _ratio(write.rps, direct.rps),
        "baseline spread over rounds (max / min req/s)": _ratio(max(rounds), min(rounds)),
    }


def build_report(
    results: list[Result], extra: dict[str, Any], options: Options, *, started_at: str,
    startup_s: float, total_s: float,
) -> dict[str, Any]:  # fmt: skip
    """Everything the run measured, as JSON-ready data."""
    baseline = results[0]
    scenarios = []
    for result in results:
        scenarios.append(result.summary(baseline))
    return {
        "started_at": started_at,
        "commit": git_commit(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "options": {**asdict(options), "out": str(options.out)},
        "startup_s": round(startup_s, 2),
        "total_s": round(total_s, 2),
        "scenarios": scenarios,
        "derived": {**derive(results), **extra},
    }


def write_report(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """Write ``<timestamp>.json`` and ``latest.md`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = report["started_at"].replace(":", "").replace("-", "")
    json_path = out / f"{stamp}.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path = out / "latest.md"
    md_path.write_text(markdown(report))
    return json_path, md_path


def parse(argv: list[str] | None) -> Options:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=3000, help="requests per scenario")
    parser.add_argument("--concurrency", type=int, default=10, help="requests in flight")
    parser.add_argument(
        "--max-seconds", type=float, default=30.0, help="wall-time cap of each scenario"
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--events", type=int, default=300, help="items for the event latency")
    parser.add_argument("--event-rate", type=float, default=100.0, help="items/s created")
    parser.add_argument("--mail-sample", type=int, default=20, help="items timed to their email")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    for name in (
        "requests",
        "concurrency",
        "rounds",
        "events",
        "event_rate",
        "mail_sample",
        "max_seconds",
    ):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return Options(
        requests=args.requests,
        concurrency=args.concurrency,
        max_seconds=args.max_seconds,
        rounds=args.rounds,
        events=args.events,
        event_rate=args.event_rate,
        mail_sample=args.mail_sample,
        out=args.out,
    )


def _terminate(signum: int, frame: FrameType | None) -> None:
    # While the stack starts (no event loop yet): SIGTERM unwinds through the `finally`s.
    raise SystemExit(128 + signum)


async def measure_until_signalled(
    stack: Stack, options: Options
) -> tuple[list[Result], dict[str, Any]]:
    """Run the scenarios; SIGTERM cancels them (the consumer and clients close on the way)."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await run_scenarios(stack, options)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    """Start the system, measure, stop it, report."""
    options = parse(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    started_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="agora-bench-") as tmp:
        infra: Infra | None = None
        try:
            with console.status("starting the stack..."):
                infra, stack = start_stack(Path(tmp))
            startup_s = time.perf_counter() - began
            console.print(f"stack up in {startup_s:.1f} s; measuring")
            results, extra = asyncio.run(measure_until_signalled(stack, options))
        except (KeyboardInterrupt, SystemExit, asyncio.CancelledError):
            console.print("interrupted: no results written")
            return 130
        finally:
            if infra is not None:
                with console.status("stopping the stack..."):
                    infra.stop()
            signal.signal(signal.SIGTERM, previous)
    total_s = time.perf_counter() - began
    report = build_report(
        results, extra, options, started_at=started_at, startup_s=startup_s, total_s=total_s
    )
    print_table(report)
    json_path, md_path = write_report(report, options.out)
    console.print(f"wrote {json_path} and {md_path} in {total_s:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
