"""Benchmark Agora against what a developer writes without its guarantees, in the same run.

Starts every process as ``agora up`` does (in a temporary folder, each child dying with this
process) plus the pinned bare FastAPI + SQLAlchemy app of ``bench/bare.py`` on the same
Postgres, then measures:

- throughput with ``wrk`` (same ``-t``/``-c`` for both sides, interleaved rounds A B A B ...,
  medians): ``POST /api/v1/items`` against the bare insert, ``GET /api/v1/items/{id}``
  against the bare select-by-id, and the gateway against going direct;
- latency at a fixed write rate, open loop: 201 -> ``ItemCreated`` on the topic against the
  broker's own produce -> consume (raw aiokafka, same rate), and 201 -> email in the sink
  against that broker leg plus one raw aiosmtplib send to the same sink (same rate).
- the relay draining an outbox backlog against raw aiokafka's batched produce rate, the
  notifier's emails/s against raw aiosmtplib over pooled connections, the cold start against
  its slowest component and each service's idle RSS, and ``POST`` on items with
  ``--workers 2`` against one worker (``scenarios.py``; ``--only`` picks scenarios).

It stops everything in ``finally``, prints the table, and writes ``docs/performance.md`` and
``bench/results/<timestamp>.json``. Run it as ``make bench`` or ``uv run python bench/run.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import aiosmtplib
import asyncpg
import httpx
from agora_contract import Envelope, ItemCreated, topics
from agora_deploy.infra import Infra
from agora_deploy.launchers.process import ManagedProcess, free_port
from agora_deploy.observe import service_gauges
from agora_deploy.stack import ComponentInfo, database_url
from agora_deploy.up import UpOptions, bring_up
from agora_kit.kafka import PRODUCER_LINGER_MS, PRODUCER_MAX_BATCH_BYTES
from agora_kit.testing.mail import MailClient
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    # mypy names files by package path from the repo root (explicit_package_bases); run as a
    # script, this folder is on sys.path and the module is plain ``scenarios``.
    from bench import scenarios
else:
    import scenarios

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
DOC = REPO / "docs" / "performance.md"
#: High enough that the gateway's per-IP rate limit never answers 429 to the load generator.
GATEWAY_RATE = "1000000"
#: The notifier's per-recipient throttle, raised so one account can receive every email.
THROTTLE = "1000000"
#: The variables that point `agora up` at external services (ignored here).
EXTERNAL = frozenset(
    {"DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "SMTP_URL", "MAIL_API_URL"}
)
BARE_DATABASE = "bench_bare"
PEER_DATABASE = "bench_peer_outbox"
RAW_TOPIC = "bench.raw-latency"
#: What ``--only`` can pick; the default run measures all of them.
SCENARIOS = ("throughput", "latency", "relay", "notifier", "startup", "scaling")
#: Wide enough for the table when the output is not a terminal (make bench | tee ...).
console = Console(width=None if sys.stdout.isatty() else 140)

#: wrk prints one JSON line from its ``done`` hook; this is its prefix.
WRK_TAG = "WRKJSON "
WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\\"requests\\": %d, \\"duration_us\\": %d, \\"errors\\": %d, "
    .. "\\"p50_us\\": %d, \\"p99_us\\": %d}\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class Options:
    """What one run measures, and its bounds."""

    seconds: float
    warmup_seconds: float
    connections: int
    threads: int
    rounds: int
    writes: int
    rate: float
    smtp_pool: int
    out: Path
    doc: Path | None
    only: frozenset[str] = frozenset(SCENARIOS)
    relay_rows: int = 20_000
    emails: int = 500
    workers: int = 2
    #: An interpreter with faststream-outbox, for the relay's peer row ("" skips it).
    peer_outbox: str = ""
    peer_rows: int = 5_000


# --- wrk ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkRound:
    """One wrk run: counts, throughput, latency, and wrk's own CPU."""

    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    client_cpu_s: float

    @property
    def rps(self) -> float:
        """Successful requests per second."""
        return (self.requests - self.errors) / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Load:
    """One wrk scenario: what it requests and how."""

    name: str
    what: str
    url: str
    method: str = "GET"
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def script(self, folder: Path) -> Path:
        """Write this scenario's Lua script into ``folder``."""
        lines = [f'wrk.method = "{self.method}"']
        if self.body is not None:
            if "]]" in self.body:
                raise ValueError("the body must not contain ']]'")
            lines.append(f"wrk.body = [[{self.body}]]")
        for key, value in self.headers.items():
            lines.append(f'wrk.headers["{key}"] = "{value}"')
        path = folder / f"{self.name.replace(' ', '_').replace('/', '_')}.lua"
        path.write_text("\n".join(lines) + "\n" + WRK_DONE)
        return path


def run_wrk(load: Load, script: Path, *, seconds: float, options: Options) -> WrkRound:
    """Run wrk for ``seconds`` against ``load``; return its figures."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed: `apt-get install -y wrk` (make bench does it)")
    argv = [
        wrk, f"-t{options.threads}", f"-c{options.connections}", f"-d{max(1, round(seconds))}s",
        "--timeout", "10s", "-s", str(script), load.url,
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(  # noqa: S603 - fixed argv
        argv, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((x for x in out.stdout.splitlines() if x.startswith(WRK_TAG)), None)
    if out.returncode != 0 or line is None:
        tail = f"{out.stdout[-800:]} {out.stderr[-800:]}"
        raise RuntimeError(f"wrk failed ({out.returncode}): {tail}")
    data = json.loads(line[len(WRK_TAG) :])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return WrkRound(
        requests=int(data["requests"]),
        errors=int(data["errors"]),
        seconds=int(data["duration_us"]) / 1e6,
        p50_ms=int(data["p50_us"]) / 1000,
        p99_ms=int(data["p99_us"]) / 1000,
        client_cpu_s=cpu,
    )


async def interleave(
    loads: list[Load], options: Options, after: dict[str, Callable[[], Awaitable[float]]]
) -> dict[str, list[WrkRound]]:
    """Run the loads in turns, round after round (A B A B ...), after a discarded warm-up.

    ``after[name]`` runs once that load's turn is over (the drain of the work its writes left
    behind), so one scenario's leftovers never load the next one.
    """
    results: dict[str, list[WrkRound]] = {load.name: [] for load in loads}
    with tempfile.TemporaryDirectory(prefix="agora-wrk-") as tmp:
        scripts = {load.name: load.script(Path(tmp)) for load in loads}
        for turn in range(options.rounds + 1):
            for load in loads:
                seconds = options.warmup_seconds if turn == 0 else options.seconds
                part = await asyncio.to_thread(
                    run_wrk, load, scripts[load.name], seconds=seconds, options=options
                )
                drained = await after[load.name]() if load.name in after else 0.0
                label = "warm-up" if turn == 0 else f"round {turn}"
                console.print(
                    f"  {label} {load.name}: {part.rps:,.0f} req/s, p50 {part.p50_ms:.1f} ms, "
                    f"p99 {part.p99_ms:.1f} ms, {part.errors} errors, "
                    f"client CPU {part.client_cpu_s / part.seconds:.0%}"
                    + (f", drained in {drained:.1f} s" if drained else "")
                )
                if turn:
                    results[load.name].append(part)
    return results


# --- accounts and items ---------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """A registered user with a bearer token."""

    user_id: int
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header."""
        return {"Authorization": f"Bearer {self.token}"}


_TOKEN_LINK = re.compile(r"[?&]token=([^\s&\"'<>]+)")


def verification_token(mail_api: str, email: str) -> str:
    """The token of the verification link mailed to ``email``."""
    with MailClient(mail_api) as mail:
        message = mail.wait_subject(email, "confirm your email", timeout_s=60)
        text = str(mail.message(str(message["ID"]))["Text"])
    found = _TOKEN_LINK.search(text)
    if found is None:
        raise RuntimeError(f"the verification email to {email} carries no token link")
    return unquote(found.group(1))


async def register(users: httpx.AsyncClient, mail_api: str, label: str) -> Account:
    """Register a user, verify its address with the mailed token, and log in.

    Verified, because the notifier retries item mail to an unverified owner (the verification
    may not be projected yet): thousands of bench items would become thousands of retries
    running in the background of every later measurement.
    """
    email = f"bench-{label}-{uuid.uuid4().hex[:10]}@example.com"
    password = f"bench-{uuid.uuid4().hex}"
    resp = await users.post(
        "/api/v1/users", json={"email": email, "name": "Bench", "password": password}
    )
    resp.raise_for_status()
    user_id = int(resp.json()["id"])
    token = await asyncio.to_thread(verification_token, mail_api, email)
    resp = await users.post("/api/v1/auth/verify-email", json={"token": token})
    resp.raise_for_status()
    resp = await users.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": email, "password": password},
    )
    resp.raise_for_status()
    return Account(user_id, email, str(resp.json()["access_token"]))


def item_body(name: str) -> dict[str, Any]:
    """A small, valid ``ItemCreate`` body (the bare app takes the same)."""
    return {"name": name, "price": "19.90", "tags": ["bench"], "description": "a bench item"}


async def create_item(client: httpx.AsyncClient, path: str, name: str, **kw: Any) -> int:
    """Create one item; return its id."""
    resp = await client.post(path, json=item_body(name), **kw)
    resp.raise_for_status()
    return int(resp.json()["id"])


async def wait_drained(items_url: str, notifier_url: str, *, timeout: float = 120.0) -> float:
    """Wait until the items outbox is published and the notifier has caught up; return secs."""
    start = time.monotonic()
    outbox: dict[str, str] = {}
    lag: dict[str, str] = {}
    while time.monotonic() - start < timeout:
        outbox, lag = await asyncio.gather(
            asyncio.to_thread(service_gauges, items_url),
            asyncio.to_thread(service_gauges, notifier_url),
        )
        if outbox.get("outbox_backlog") == "0" and lag.get("consumer_lag", "0") == "0":
            return time.monotonic() - start
        await asyncio.sleep(0.25)
    raise RuntimeError(f"backlog not drained within {timeout}s: items {outbox}, notifier {lag}")


# --- latency at a fixed rate, open loop -----------------------------------------------------


@dataclass
class Latency:
    """Latency samples of one open-loop scenario."""

    samples_ms: list[float]
    errors: int
    seconds: float
    client_cpu_s: float = 0.0

    def pct(self, q: float) -> float:
        """The ``q`` quantile (0..1) in ms, nearest rank; NaN when empty."""
        if not self.samples_ms:
            return math.nan
        ordered = sorted(self.samples_ms)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def open_loop(
    count: int, rate: float, one: Callable[[int, float], Awaitable[None]], *, in_flight: int = 256
) -> float:
    """Start ``one(index, scheduled_at)`` at ``rate`` per second regardless of completions."""
    gate = asyncio.Semaphore(in_flight)
    start = time.perf_counter()

    async def guarded(index: int, at: float) -> None:
        async with gate:
            await one(index, at)

    tasks = []
    for index in range(count):
        at = start + index / rate
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        tasks.append(asyncio.create_task(guarded(index, at)))
    await asyncio.gather(*tasks)
    return time.perf_counter() - start


async def topic_reader(bootstrap: str, topic: str) -> AIOKafkaConsumer:
    """A consumer assigned to every partition of ``topic`` at its end (fetch wait 10 ms)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
        request_timeout_ms=10_000,
    )
    await asyncio.wait_for(consumer.start(), 15)
    try:
        deadline = time.monotonic() + 15
        parts: list[TopicPartition] = []
        while not parts and time.monotonic() < deadline:
            await consumer.topics()
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            if not parts:
                await asyncio.sleep(0.2)
        if not parts:
            raise RuntimeError(f"{topic} has no partitions")
        consumer.assign(parts)
        for tp, end in (await consumer.end_offsets(parts)).items():
            consumer.seek(tp, end)
    except BaseException:
        await consumer.stop()
        raise
    return consumer


async def read_until(
    consumer: AIOKafkaConsumer,
    seen: dict[str, float],
    key_of: Callable[[bytes], str | None],
    done: Callable[[], bool],
    *,
    timeout: float,
) -> None:
    """Note when each record arrives (by ``key_of(value)``) until ``done()`` or the timeout."""
    deadline = time.perf_counter() + timeout
    while not done() and time.perf_counter() < deadline:
        batch = await consumer.getmany(timeout_ms=50)
        now = time.perf_counter()
        for record in (r for rs in batch.values() for r in rs):
            key = key_of(record.value or b"")
            if key is not None:
                seen.setdefault(key, now)


async def raw_broker(bootstrap: str, partitions: int, options: Options) -> Latency:
    """The broker's own produce -> consume latency at the write rate (the relay's producer
    settings: acks=all, the same linger and batch size; the same reader as the 201 -> event)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await asyncio.wait_for(admin.start(), 15)
    try:
        with contextlib.suppress(Exception):  # already there from an earlier run
            await admin.create_topics([NewTopic(RAW_TOPIC, partitions, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=PRODUCER_LINGER_MS,
        max_batch_size=PRODUCER_MAX_BATCH_BYTES,
        request_timeout_ms=10_000,
    )
    await asyncio.wait_for(producer.start(), 15)
    consumer = await topic_reader(bootstrap, RAW_TOPIC)
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    errors = 0
    finished = asyncio.Event()
    pad = "x" * 400  # about the size of an ItemCreated envelope

    def key_of(value: bytes) -> str | None:
        return str(json.loads(value)["id"])

    reader = asyncio.create_task(
        read_until(
            consumer, seen, key_of, lambda: finished.is_set() and sent.keys() <= seen.keys(),
            timeout=options.writes / options.rate + 60,
        )
    )  # fmt: skip

    async def one(index: int, at: float) -> None:
        nonlocal errors
        sent[str(index)] = at
        value = json.dumps({"id": index, "pad": pad}).encode()
        try:
            future = await producer.send(RAW_TOPIC, value, key=str(index).encode())
            await asyncio.wait_for(future, 15)
        except Exception:
            errors += 1
            sent.pop(str(index), None)

    cpu = time.process_time()
    try:
        elapsed = await open_loop(options.writes, options.rate, one)
        finished.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, 30)
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await asyncio.wait_for(consumer.stop(), 10)
        await asyncio.wait_for(producer.stop(), 10)
    lost = [k for k in sent if k not in seen]
    samples = [(seen[k] - t) * 1000 for k, t in sent.items() if k in seen]
    return Latency(samples, errors + len(lost), elapsed, time.process_time() - cpu)


async def raw_smtp(smtp_url: str, options: Options) -> Latency:
    """One raw aiosmtplib send per write, at the write rate, over a pool of open connections
    (as many as the notifier keeps); time from the scheduled start to the server's 250."""
    host, _, port = smtp_url.split("://", 1)[-1].rsplit("@", 1)[-1].partition(":")
    pool: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
    for _ in range(options.smtp_pool):
        client = aiosmtplib.SMTP(hostname=host, port=int(port or 25), timeout=10, start_tls=False)
        await client.connect()
        pool.put_nowait(client)
    samples: list[float] = []
    errors = 0

    async def one(index: int, at: float) -> None:
        nonlocal errors
        message = EmailMessage()
        message["From"] = "bench@example.com"
        message["To"] = f"raw-{index}@example.com"
        message["Subject"] = f"raw send {index}"
        message.set_content("A raw aiosmtplib send, for the benchmark's baseline.\n")
        client = await pool.get()
        try:
            await client.send_message(message)
            samples.append((time.perf_counter() - at) * 1000)
        except aiosmtplib.SMTPException:
            errors += 1
        finally:
            pool.put_nowait(client)

    cpu = time.process_time()
    try:
        elapsed = await open_loop(options.writes, options.rate, one)
    finally:
        while not pool.empty():
            with contextlib.suppress(aiosmtplib.SMTPException):
                await pool.get_nowait().quit()
    return Latency(samples, errors, elapsed, time.process_time() - cpu)


async def sink_times(
    mail: httpx.AsyncClient, address: str, subjects: set[str], *, timeout: float
) -> dict[str, float]:
    """Wait for an email to ``address`` per subject fragment; return when the sink got each
    (its ``Created`` stamp, epoch seconds, millisecond resolution)."""
    deadline = time.monotonic() + timeout
    found: dict[str, float] = {}
    while time.monotonic() < deadline:
        resp = await mail.get("/api/v1/messages", params={"limit": 50_000})
        resp.raise_for_status()
        for message in resp.json()["messages"]:
            people = [str(p.get("Address", "")).lower() for p in message.get("To") or []]
            if address.lower() not in people:
                continue
            subject = str(message.get("Subject", ""))
            for fragment in subjects - found.keys():
                if fragment in subject:
                    created = str(message["Created"]).replace("Z", "+00:00")
                    found[fragment] = datetime.fromisoformat(created).timestamp()
        if found.keys() >= subjects:
            break
        await asyncio.sleep(0.5)
    return found


async def write_latency(
    items: httpx.AsyncClient,
    mail: httpx.AsyncClient,
    bootstrap: str,
    account: Account,
    options: Options,
) -> tuple[Latency, Latency]:
    """``options.writes`` items at ``options.rate``/s, open loop, by an account with item
    mail on: 201 -> ``ItemCreated`` on items.events, and 201 -> "is listed" email in the sink."""
    consumer = await topic_reader(bootstrap, topics.ITEMS_EVENTS)
    created: dict[str, float] = {}
    created_wall: dict[str, float] = {}
    names: dict[str, str] = {}
    seen: dict[str, float] = {}
    errors = 0
    finished = asyncio.Event()

    def key_of(value: bytes) -> str | None:
        try:
            envelope = Envelope.from_bytes(value)
        except ValueError:  # not an envelope (e.g. an empty value): not one of ours
            return None
        return envelope.subject if envelope.type == ItemCreated.event_type else None

    reader = asyncio.create_task(
        read_until(
            consumer, seen, key_of, lambda: finished.is_set() and created.keys() <= seen.keys(),
            timeout=options.writes / options.rate + 60,
        )
    )  # fmt: skip
    run = uuid.uuid4().hex[:6]

    async def one(index: int, at: float) -> None:
        nonlocal errors
        name = f"bench-{run}-{index}"
        try:
            item_id = await create_item(items, "/api/v1/items", name, headers=account.headers)
        except httpx.HTTPError:
            errors += 1
            return
        created[str(item_id)] = time.perf_counter()
        created_wall[str(item_id)] = time.time()
        names[str(item_id)] = f'"{name}" is listed'

    cpu = time.process_time()
    try:
        elapsed = await open_loop(options.writes, options.rate, one)
        finished.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, 30)
    finally:
        reader.cancel()
        (outcome,) = await asyncio.gather(reader, return_exceptions=True)
        await asyncio.wait_for(consumer.stop(), 10)
    if isinstance(outcome, Exception):
        console.print(f"  the event reader failed: {outcome!r}")
    client_cpu = time.process_time() - cpu
    lost = [i for i in created if i not in seen]
    events = Latency(
        [(seen[i] - t) * 1000 for i, t in created.items() if i in seen],
        errors + len(lost),
        elapsed,
        client_cpu,
    )
    arrived = await sink_times(mail, account.email, set(names.values()), timeout=60)
    mails = [(arrived[names[i]] - t) * 1000 for i, t in created_wall.items() if names[i] in arrived]
    missing = len(names) - len(mails)
    return events, Latency(mails, errors + missing, elapsed, client_cpu)


async def wait_welcome(mail: httpx.AsyncClient, address: str) -> None:
    """Wait for the welcome email, so the notifier knows the address before its items."""
    got = await sink_times(mail, address, {"elcome"}, timeout=60)
    if not got:
        raise RuntimeError(f"no welcome email to {address} within 60 s")


# --- the run --------------------------------------------------------------------------------


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


@dataclass
class Row:
    """One line of the table."""

    name: str
    what: str
    n: int
    errors: int
    rps: float | None
    p50_ms: float
    p99_ms: float
    ratio: float | None
    ratio_of: str
    goal: str
    client_cpu: float | None
    rounds: list[float] = field(default_factory=list)

    def met(self) -> bool | None:
        """Whether the row meets its goal (None without one)."""
        if not self.goal or self.ratio is None:
            return None
        sign = self.goal[:2] if self.goal[1] == "=" else self.goal[:1]
        value = float(self.goal[len(sign) :].rstrip("x"))
        return {">=": self.ratio >= value, "<=": self.ratio <= value, ">": self.ratio > value}[sign]


def wrk_row(name: str, what: str, parts: list[WrkRound]) -> Row:
    """Medians of a load's rounds."""
    return Row(
        name=name,
        what=what,
        n=sum(p.requests for p in parts),
        errors=sum(p.errors for p in parts),
        rps=statistics.median(p.rps for p in parts),
        p50_ms=statistics.median(p.p50_ms for p in parts),
        p99_ms=statistics.median(p.p99_ms for p in parts),
        ratio=None,
        ratio_of="",
        goal="",
        client_cpu=sum(p.client_cpu_s for p in parts) / sum(p.seconds for p in parts),
        rounds=[round(p.rps, 1) for p in parts],
    )


def paired_ratio(a: list[WrkRound], b: list[WrkRound]) -> float:
    """The median over rounds of ``a``'s throughput over ``b``'s in the same round."""
    return statistics.median(x.rps / y.rps for x, y in zip(a, b, strict=True) if y.rps > 0)


def latency_row(name: str, what: str, lat: Latency) -> Row:
    """An open-loop latency scenario."""
    return Row(
        name=name,
        what=what,
        n=len(lat.samples_ms),
        errors=lat.errors,
        rps=None,
        p50_ms=lat.pct(0.5),
        p99_ms=lat.pct(0.99),
        ratio=None,
        ratio_of="",
        goal="",
        client_cpu=lat.client_cpu_s / lat.seconds if lat.seconds else None,
    )


async def run_scenarios(stack: Stack, options: Options) -> list[Row]:
    """Measure every selected scenario; return the table's rows."""
    timeout = httpx.Timeout(10.0)
    only = options.only
    rows: list[Row] = []
    async with (
        httpx.AsyncClient(base_url=stack.users, timeout=timeout) as users,
        httpx.AsyncClient(base_url=stack.items, timeout=timeout) as items,
        httpx.AsyncClient(base_url=stack.notifier, timeout=timeout) as notifier,
        httpx.AsyncClient(base_url=stack.mail, timeout=timeout) as mail,
        httpx.AsyncClient(base_url=stack.bare, timeout=timeout) as bare,
    ):
        if only & {"throughput", "scaling"}:
            rows += await throughput(stack, options, users, items, notifier, mail, bare)
        if stack.stop_items_workers is not None:
            # Its relay may hold the outbox lock, and its workers take CPU: the rows below
            # are measured with the stack as `agora up` runs it.
            await asyncio.to_thread(stack.stop_items_workers)
        writer: Account | None = None
        if only & {"latency", "notifier"}:
            writer = await register(users, stack.mail, "mail")
            await wait_welcome(mail, writer.email)
        # The latency rows first, right after the throughput rows, as before these scenarios
        # existed: the relay and notifier scenarios leave nothing behind, but this keeps the
        # mandatory rows measured under the same conditions as their history.
        if "latency" in only and writer is not None:
            rows += await latency_rows(stack, options, items, mail, writer)
        if "relay" in only:
            rows += await relay_rows(stack, options)
        if "notifier" in only and writer is not None:
            rows += await notifier_rows(stack, options, items, mail, writer)
    return rows


async def throughput(
    stack: Stack,
    options: Options,
    users: httpx.AsyncClient,
    items: httpx.AsyncClient,
    notifier: httpx.AsyncClient,
    mail: httpx.AsyncClient,
    bare: httpx.AsyncClient,
) -> list[Row]:
    """The wrk rows: POST and GET against the bare app, the gateway, and the workers curve."""
    load = await register(users, stack.mail, "load")
    # The load account opts out of item mail: its thousands of items must not turn into
    # thousands of emails competing for the two cores with what is measured next.
    resp = await notifier.put(
        "/api/v1/notifications/preferences", json={"item_mail": False}, headers=load.headers
    )
    resp.raise_for_status()
    item_id = await create_item(items, "/api/v1/items", "bench-target", headers=load.headers)
    bare_id = await create_item(bare, "/items", "bench-target")
    body = json.dumps(item_body("bench-item"))
    post_headers = {"Content-Type": "application/json"}
    auth = {**post_headers, "Authorization": f"Bearer {load.token}"}
    post = Load("POST /api/v1/items",
                "row + outbox row in one transaction, bearer token (auth + revocation)",
                f"{stack.items}/api/v1/items", "POST", body, auth)  # fmt: skip
    loads: list[Load] = []
    if "throughput" in options.only:
        loads = [
            Load("bare POST", "bare FastAPI + SQLAlchemy ORM insert", f"{stack.bare}/items",
                 "POST", body, post_headers),
            post,
            Load("bare GET", "bare FastAPI + SQLAlchemy session.get by id",
                 f"{stack.bare}/items/{bare_id}"),
            Load("GET /api/v1/items/{id}", "one row by id, with ETag",
                 f"{stack.items}/api/v1/items/{item_id}"),
            Load("GET via gateway", "the same GET through Traefik",
                 f"{stack.gateway}/api/v1/items/{item_id}"),
        ]  # fmt: skip
    scaled = f"POST --workers {options.workers}"
    if "scaling" in options.only:
        if post not in loads:
            loads.append(post)
        loads.append(
            Load(scaled, f"the same POST on an items process started with --workers "
                 f"{options.workers} (same database, same relay)",
                 f"{stack.items_workers}/api/v1/items", "POST", body, auth)
        )  # fmt: skip

    async def drain() -> float:
        return await wait_drained(stack.items, stack.notifier)

    console.print(
        f"throughput: wrk -t{options.threads} -c{options.connections}, "
        f"{options.rounds} interleaved rounds of {options.seconds:g} s"
    )
    parts = await interleave(loads, options, {post.name: drain, scaled: drain})
    by = {ld.name: wrk_row(ld.name, ld.what, parts[ld.name]) for ld in loads}
    if "throughput" in options.only:
        for name in ("bare POST", "bare GET"):
            by[name].ratio, by[name].ratio_of = 1.0, "reference"
        p, get = by[post.name], by["GET /api/v1/items/{id}"]
        gw = by["GET via gateway"]
        p.ratio = paired_ratio(parts[p.name], parts["bare POST"])
        p.ratio_of, p.goal = "req/s / bare POST", ">=1.0x"
        get.ratio = paired_ratio(parts[get.name], parts["bare GET"])
        get.ratio_of, get.goal = "req/s / bare GET", ">=1.0x"
        gw.ratio = paired_ratio(parts[gw.name], parts[get.name])
        gw.ratio_of, gw.goal = "req/s / GET direct", ">=0.85x"
    if "scaling" in options.only:
        sc = by[scaled]
        sc.ratio = paired_ratio(parts[scaled], parts[post.name])
        sc.ratio_of, sc.goal = "req/s / POST (1 worker)", ">1.0x"
        if "throughput" not in options.only:
            by[post.name].ratio, by[post.name].ratio_of = 1.0, "reference"
    return list(by.values())


async def relay_rows(stack: Stack, options: Options) -> list[Row]:
    """Drain an outbox backlog against the broker's own batched produce rate."""
    n = options.relay_rows
    console.print(f"relay: {n:,} messages raw, then a backlog of {n:,} outbox rows")
    partitions = len(await items_partitions(stack.kafka))
    await scenarios.ensure_topic(stack.kafka, scenarios.RELAY_TOPIC, partitions)
    raw = await scenarios.raw_produce(stack.kafka, n)
    console.print(f"  raw aiokafka batched: {raw.per_s:,.0f} msg/s ({raw.seconds:.1f} s)")
    relay = await scenarios.relay_drain(
        scenarios.items_database(stack.postgres), n, progress=console.print
    )
    console.print(f"  relay drain: {relay.per_s:,.0f} rows/s ({relay.seconds:.1f} s)")
    raw_row = rate_row(
        f"raw aiokafka batched ({n:,})",
        "every send in flight at once, the relay's producer settings",
        raw,
    )
    relay_row = rate_row(f"relay drain ({n:,} rows)",
                         "a committed outbox backlog until every row is marked published",
                         relay)  # fmt: skip
    raw_row.ratio, raw_row.ratio_of = 1.0, "reference"
    relay_row.ratio = _div(relay.per_s, raw.per_s)
    relay_row.ratio_of, relay_row.goal = "msg/s / raw aiokafka batched", ">=0.5x"
    rows = [raw_row, relay_row]
    peers = {
        "library defaults": (),
        "8 workers, fetch 100": ("--max-workers", "8", "--fetch-batch-size", "100"),
    }
    for label, extra in peers.items() if options.peer_outbox else ():
        peer = await peer_outbox(stack, options, *extra)
        console.print(
            f"  faststream-outbox ({label}): {peer.per_s:,.0f} rows/s ({peer.seconds:.1f} s)"
        )
        peer_row = rate_row(f"faststream-outbox 0.19, {label} ({options.peer_rows:,} rows)",
                            "the Python peer relaying a backlog to the same broker "
                            f"(bench/peer_outbox.py, {label})", peer)  # fmt: skip
        peer_row.ratio = _div(relay.per_s, peer.per_s)
        peer_row.ratio_of, peer_row.goal = "relay msg/s / this", ">1.0x"
        rows.append(peer_row)
    return rows


async def peer_outbox(stack: Stack, options: Options, *extra: str) -> scenarios.Rate:
    """Run bench/peer_outbox.py with the given interpreter on its own database."""
    server = database_url(stack.postgres, "postgres", driver="postgresql")
    conn = await asyncpg.connect(server, timeout=10)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", PEER_DATABASE):
            await conn.execute(f"CREATE DATABASE {PEER_DATABASE}")
    finally:
        await conn.close(timeout=10)
    argv = [
        options.peer_outbox, str(BENCH / "peer_outbox.py"),
        "--dsn", database_url(stack.postgres, PEER_DATABASE),
        "--bootstrap", stack.kafka, "--topic", scenarios.RELAY_TOPIC,
        "--rows", str(options.peer_rows), "--linger-ms", str(PRODUCER_LINGER_MS),
        "--timeout", str(120 + options.peer_rows / 20), *extra,
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 180 + options.peer_rows / 20)
    finally:
        if proc.returncode is None:  # cancelled or timed out: never leave it running
            proc.kill()
            await proc.wait()
    line = next((x for x in out.decode().splitlines() if x.startswith("{")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"the faststream-outbox peer failed: {err.decode()[-1500:]}")
    data = json.loads(line)
    if data["left"]:
        raise RuntimeError(f"the faststream-outbox peer left {data['left']} rows")
    return scenarios.Rate(int(data["rows"]), float(data["seconds"]))


async def notifier_rows(
    stack: Stack, options: Options, items: httpx.AsyncClient, mail: httpx.AsyncClient,
    writer: Account,
) -> list[Row]:  # fmt: skip
    """The notifier's emails/s against raw aiosmtplib's over pooled connections."""
    n = options.emails
    console.print(f"notifier: {n} emails raw, then {n} ItemCreated through the notifier")
    raw = await scenarios.raw_smtp_rate(stack.smtp, n, options.smtp_pool)
    console.print(f"  raw aiosmtplib pooled: {raw.per_s:,.0f} emails/s ({raw.seconds:.1f} s)")
    template = await scenarios.template_event(
        scenarios.items_database(stack.postgres),
        lambda: create_item(items, "/api/v1/items", "bench-template", headers=writer.headers),
    )
    await wait_drained(stack.items, stack.notifier)
    through = await scenarios.notifier_rate(stack.kafka, mail, writer.email, template, n)
    console.print(f"  notifier: {through.per_s:,.0f} emails/s ({through.seconds:.1f} s)")
    raw_row = rate_row(
        f"raw aiosmtplib pooled ({n})", f"{n} sends over {options.smtp_pool} open connections", raw
    )
    row = rate_row(
        f"notifier ({n} emails)",
        "ItemCreated on items.events -> 'is listed' email in the sink",
        through,
    )
    raw_row.ratio, raw_row.ratio_of = 1.0, "reference"
    row.ratio = _div(through.per_s, raw.per_s)
    row.ratio_of, row.goal = "emails/s / raw aiosmtplib", ">=0.5x"  # fmt: skip
    return [raw_row, row]


async def latency_rows(
    stack: Stack, options: Options, items: httpx.AsyncClient, mail: httpx.AsyncClient,
    writer: Account,
) -> list[Row]:  # fmt: skip
    """201 -> event and 201 -> email at a fixed rate, against the raw legs."""
    console.print(f"latency: {options.writes} writes at {options.rate:g}/s, open loop")
    partitions = len(await items_partitions(stack.kafka))
    broker = await raw_broker(stack.kafka, partitions, options)
    say("raw aiokafka", broker)
    smtp = await raw_smtp(stack.smtp, options)
    say("raw aiosmtplib", smtp)
    events, mails = await write_latency(items, mail, stack.kafka, writer, options)
    say("201 -> event", events)
    say("201 -> email", mails)
    rate = f"{options.rate:g}/s"
    raw_k = latency_row(f"raw aiokafka @{rate}", "produce -> consume, relay's settings", broker)
    raw_k.ratio, raw_k.ratio_of = 1.0, "reference"
    ev = latency_row(f"201 -> event @{rate}", f"POST 201 -> ItemCreated on {topics.ITEMS_EVENTS}",
                     events)  # fmt: skip
    ev.ratio, ev.ratio_of, ev.goal = _div(ev.p99_ms, raw_k.p99_ms), "p99 / raw aiokafka", "<=2.0x"
    raw_s = latency_row(f"raw aiosmtplib @{rate}", "one send, pooled connections", smtp)
    raw_s.ratio, raw_s.ratio_of = 1.0, "reference"
    em = latency_row(f"201 -> email @{rate}", "POST 201 -> 'is listed' email in the sink", mails)
    em.ratio = _div(em.p99_ms, raw_k.p99_ms + raw_s.p99_ms)
    em.ratio_of, em.goal = "p99 / (raw aiokafka + raw aiosmtplib)", "<=2.0x"
    return [raw_k, ev, raw_s, em]


def rate_row(name: str, what: str, rate: scenarios.Rate) -> Row:
    """A count-over-time scenario (relay, notifier): its rate in the req/s column."""
    return Row(
        name=name, what=what, n=rate.count, errors=rate.errors, rps=rate.per_s,
        p50_ms=math.nan, p99_ms=math.nan, ratio=None, ratio_of="", goal="",
        client_cpu=rate.client_cpu_s / rate.seconds if rate.client_cpu_s else None,
    )  # fmt: skip


def startup_rows(times: scenarios.StartTimes, rss: dict[str, float]) -> list[Row]:
    """``agora up``'s cold start against its slowest component, and each idle RSS."""

    def single(name: str, what: str, seconds: float) -> Row:
        ms = seconds * 1000
        return Row(name=name, what=what, n=1, errors=0, rps=None, p50_ms=ms, p99_ms=ms,
                   ratio=None, ratio_of="", goal="", client_cpu=None)  # fmt: skip

    slow_name, slow_s = times.slowest()
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in times.steps.items())
    ref = single(f"slowest component: {slow_name.removeprefix('start ')}",
                 "its own start, timed inside the same bring_up", slow_s)  # fmt: skip
    ref.ratio, ref.ratio_of = 1.0, "reference"
    total = single("agora up, cold", f"the whole bring_up, fresh folders ({steps})",
                   times.total_s)  # fmt: skip
    total.ratio, total.ratio_of, total.goal = total_s_ratio(times), "time / slowest", "<=1.3x"
    rows = [ref, total]
    for name, mb in rss.items():
        row = single(f"{name} idle RSS {mb:.0f} MB", "its process tree, 5 s after the stack was "
                     "up, before any load", math.nan)  # fmt: skip
        row.n, row.p50_ms, row.p99_ms = 1, math.nan, math.nan
        row.ratio, row.ratio_of, row.goal = mb / scenarios.RSS_GOAL_MB, "RSS / 150 MB", "<=1.0x"
        rows.append(row)
    return rows


def total_s_ratio(times: scenarios.StartTimes) -> float | None:
    """The cold start over the slowest component's own start."""
    return _div(times.total_s, times.slowest()[1])


def say(what: str, lat: Latency) -> None:
    """Print one latency scenario's progress line."""
    console.print(
        f"  {what}: p50 {lat.pct(0.5):.1f} ms, p99 {lat.pct(0.99):.1f} ms, "
        f"{len(lat.samples_ms)} samples, {lat.errors} errors"
    )


def bare_argv(port: int) -> list[str]:
    """The bare app's command line: the services' uvicorn flags, one worker."""
    return [
        sys.executable, "-m", "uvicorn", "--factory", "bare:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
    ]  # fmt: skip


def _div(a: float, b: float) -> float | None:
    return None if math.isnan(a) or math.isnan(b) or b == 0 else a / b


async def items_partitions(bootstrap: str) -> set[int]:
    """The partitions of items.events (the raw topic gets as many)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await asyncio.wait_for(consumer.start(), 15)
    try:
        await consumer.topics()
        return consumer.partitions_for_topic(topics.ITEMS_EVENTS) or {0}
    finally:
        await consumer.stop()


def start_stack(
    state_dir: Path, options: Options
) -> tuple[Infra, Stack, scenarios.StartTimes, dict[str, float]]:
    """Start the whole system as `agora up` does (each step timed), plus the bare app and, for
    the scaling scenario, a second items process with ``--workers N``; the caller stops it."""
    os.environ["GATEWAY_RATE_AVERAGE"] = GATEWAY_RATE
    os.environ["GATEWAY_RATE_BURST"] = GATEWAY_RATE
    os.environ["NOTIFIER_THROTTLE_LIMIT"] = THROTTLE
    # Always the embedded services: thousands of benchmark items must never land in an
    # external database or broker that DATABASE_URL and friends happen to name.
    env = {k: v for k, v in os.environ.items() if k not in EXTERNAL}
    infra = scenarios.TimedInfra(state_dir, die_with_parent=True, ephemeral=True, env=env)
    times = infra.times = scenarios.StartTimes()
    rss: dict[str, float] = {}
    items_workers = ""
    workers_process: ManagedProcess | None = None
    try:
        began = time.perf_counter()
        with scenarios.timed_bring_up(times):
            bring_up(infra, UpOptions(gateway_port=free_port()))
        times.total_s = time.perf_counter() - began
        if "startup" in options.only:
            rss = scenarios.idle_rss_mb(infra)
        infra.create_database(BARE_DATABASE)
        server = infra.components["postgres"].url
        port = free_port()
        bare = ManagedProcess(
            "bare",
            bare_argv(port),
            infra.log_dir / "bare.log",
            env={**env, "BENCH_BARE_DATABASE_URL": database_url(server, BARE_DATABASE)},
            cwd=BENCH,
            die_with_parent=True,
            ports=(port,),
        )
        bare.start()
        info = ComponentInfo("bare", f"http://127.0.0.1:{port}", bare.pid, "running")
        infra.add_process(info, bare)
        wait_http(f"http://127.0.0.1:{port}/health", bare)
        if "scaling" in options.only:
            items_workers, workers_process = scenarios.start_items_workers(infra, options.workers)
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


def _num(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "%":
        return f"{value:.0%}"
    return f"{value:,.1f}"


HEADERS = ("scenario", "n", "errors", "req/s", "p50 ms", "p99 ms", "ratio", "of", "goal",
           "client CPU")  # fmt: skip


def cells(row: Row) -> list[str]:
    """One row of the table as text."""
    met = row.met()
    goal = row.goal.replace(">=", "≥ ").replace("<=", "≤ ")
    goal = f"{goal} {'met' if met else 'MISSED'}" if met is not None else goal
    return [
        row.name, str(row.n), str(row.errors), _num(row.rps), _num(row.p50_ms),
        _num(row.p99_ms), _num(row.ratio, "x"), row.ratio_of, goal, _num(row.client_cpu, "%"),
    ]  # fmt: skip


def print_table(report: dict[str, Any], rows: list[Row]) -> None:
    """Print the table."""
    table = Table(title=f"Agora bench {report['started_at']} (commit {report['commit']})")
    for header in HEADERS:
        justify = "left" if header in {"scenario", "of", "goal"} else "right"
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*cells(row))
    console.print(table)


def markdown(report: dict[str, Any], rows: list[Row]) -> str:
    """``docs/performance.md``: the table, how it was measured, how to reproduce it."""
    o = report["options"]
    lines = [
        "# Performance",
        "",
        "Agora against what a developer writes without its guarantees, measured in the same run "
        "on the same machine. Written by `make bench` (`bench/run.py`); the last accepted run "
        "is kept here, and a later change that drops a ratio by more than 10% is a regression.",
        "",
        f"Run {report['started_at']}, commit `{report['commit']}`, {report['cpus']} CPUs, "
        f"Python {report['python']}, load average {report['loadavg']} at the start. "
        f"Throughput: `wrk -t{o['threads']} -c{o['connections']}`, {o['rounds']} interleaved "
        f"rounds of {o['seconds']:g} s after a {o['warmup_seconds']:g} s warm-up, medians. "
        f"Latency: {o['writes']} writes at {o['rate']:g}/s, open loop. "
        f"Relay: a backlog of {o['relay_rows']:,} rows; notifier: {o['emails']:,} emails; "
        f"scaling: items with `--workers {o['workers']}`. "
        f"Stack up in {report['startup_s']:.1f} s, whole run {report['total_s']:.0f} s.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join(["---", *["---:"] * 6, "---", "---", "---:"]) + "|",
    ]
    lines += ["| " + " | ".join(cells(row)).replace("{", "\\{") + " |" for row in rows]
    lines += [
        "",
        "Throughput per round (req/s):",
        "",
        *[
            f"- {row.name}: {', '.join(f'{r:,.0f}' for r in row.rounds)}"
            for row in rows
            if row.rounds
        ],
        "",
        "## What each row is",
        "",
        *[f"- **{row.name}**: {row.what}." for row in rows],
        "",
        "- **bare POST / bare GET** are `bench/bare.py`: FastAPI with a pydantic body, one "
        "`AsyncSession` per request from an `async_sessionmaker` over "
        "`create_async_engine(asyncpg, pool_size=10)`; the POST does `session.add(row)` and "
        "`await session.commit()` and returns the row, the GET does `await session.get(Item, id)`. "
        "ORM, no auth, no middleware, no outbox; its own database on the stack's Postgres, "
        "started by the bench with the same uvicorn flags as the services (one worker).",
        "- **POST /api/v1/items** keeps every guarantee: the bearer token is verified and checked "
        "against the revocation list, the owner is checked against the deleted-users projection, "
        "and the item row and its outbox row commit in one transaction. The relay runs in the "
        "same process during the measurement; the outbox is drained after each of its turns.",
        "- **raw aiokafka** produces at the write rate with the relay's producer settings "
        "(acks=all, the same linger and batch size) and reads with the same consumer as the "
        "201 -> event row (assigned partitions, `fetch_max_wait_ms=10`).",
        "- **raw aiosmtplib** sends one email per write at the write rate over as many open "
        "connections as the notifier keeps, to the same sink; the time is to the server's 250.",
        "- **201 -> email** uses the sink's receive stamp (millisecond resolution); the bench "
        f"raises the notifier's per-recipient throttle for its run (`NOTIFIER_THROTTLE_LIMIT="
        f"{THROTTLE}`) and the gateway's rate limit, as every write comes from one account.",
        "- **relay drain** commits the whole backlog at once into the items outbox (one "
        "`INSERT ... SELECT`, a topic of its own that no service consumes), wakes the relay "
        "with its `NOTIFY`, and times until no row of it is unpublished; **raw aiokafka "
        "batched** sends as many messages of the same size to that topic with every send in "
        "flight at once and the relay's producer settings. The req/s column holds messages/s.",
        "- **notifier** produces copies of a real `ItemCreated` (new event and item ids) for "
        "one account with item mail on and times from the first send to the last 'is listed' "
        "email in the sink; **raw aiosmtplib pooled** sends as many emails over "
        f"{o['smtp_pool']} open connections. The req/s column holds emails/s.",
        "- **agora up, cold** is the bench's own `bring_up` (what `agora up` runs) on fresh "
        "folders, every step timed inside it (its steps are listed in the row's description "
        "above); the reference is its slowest single component start. The p50/p99 columns hold "
        "the one time, in ms. **idle RSS** is each service's process tree 5 s after start, "
        "before any load.",
        "- **POST --workers N** is a second items process started with `--workers N` on the "
        "same database, in the same wrk rounds as the one-worker POST.",
        "- **client CPU** is the load generator's CPU time over the wall time: wrk's for the "
        "throughput rows, this Python process's for the latency and rate rows. The two cores are "
        "shared with the whole stack; read the ratios, not the absolute numbers.",
        "",
        "## Reproduce",
        "",
        "```sh",
        "make bench                      # installs wrk when missing, writes this file",
        "uv run python bench/run.py --seconds 8 --rounds 3 --rate 200 --writes 600 \\",
        "    --relay-rows 20000 --emails 500 --workers 2",
        "uv run python bench/run.py --only relay --relay-rows 100000   # the issue's backlog",
        "uv run python bench/run.py --only relay --peer-outbox /tmp/fso/bin/python  # + the peer",
        "```",
        "",
        "Every figure of the run is also in `bench/results/<timestamp>.json` (not committed).",
        "",
    ]
    return "\n".join(lines)


#: Everything below this line in docs/performance.md is written by hand (the profile, what
#: limits each figure) and kept when the bench rewrites the table above it.
NOTES_MARKER = "<!-- Written by hand below this line; make bench keeps it. -->"


def kept_notes(doc: Path) -> str:
    """The hand-written part of an existing report (from ``NOTES_MARKER`` on), or nothing."""
    try:
        text = doc.read_text()
    except OSError:
        return ""
    at = text.find(NOTES_MARKER)
    return "\n" + text[at:] if at >= 0 else ""


def build_report(rows: list[Row], options: Options, **extra: Any) -> dict[str, Any]:
    """Everything the run measured, as JSON-ready data."""
    return {
        "commit": git_commit(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "options": {
            **asdict(options),
            "out": str(options.out),
            "doc": str(options.doc),
            "only": sorted(options.only),
        },
        "rows": [asdict(row) | {"met": row.met()} for row in rows],
        **extra,
    }


def parse(argv: list[str] | None) -> Options:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=8.0, help="wrk seconds per round")
    parser.add_argument("--warmup-seconds", type=float, default=3.0, help="wrk warm-up round")
    parser.add_argument("--connections", type=int, default=10, help="wrk -c, for every load")
    parser.add_argument("--threads", type=int, default=1, help="wrk -t")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--writes", type=int, default=600, help="writes for the latency rows")
    parser.add_argument("--rate", type=float, default=200.0, help="writes/s, open loop")
    parser.add_argument("--smtp-pool", type=int, default=4, help="raw aiosmtplib connections")
    parser.add_argument("--relay-rows", type=int, default=20_000, help="outbox backlog rows")
    parser.add_argument("--emails", type=int, default=500, help="emails through the notifier")
    parser.add_argument("--workers", type=int, default=2, help="items workers, scaling row")
    parser.add_argument(
        "--peer-outbox", default="", metavar="PYTHON",
        help="an interpreter with faststream-outbox 0.19: adds its relay rows (bench/README.md)",
    )  # fmt: skip
    parser.add_argument("--peer-rows", type=int, default=5_000, help="the peer's backlog")
    parser.add_argument(
        "--only", default=",".join(SCENARIOS),
        help=f"comma-separated scenarios to run (default all): {', '.join(SCENARIOS)}",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    parser.add_argument(
        "--doc", default=None,
        help=f"markdown report ('' to skip; default {DOC.relative_to(REPO)} on a full run, "
        "none with --only)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    for name in ("seconds", "warmup_seconds", "connections", "threads", "rounds", "writes",
                 "rate", "smtp_pool", "relay_rows", "emails", "workers", "peer_rows"):  # fmt: skip
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    only = frozenset(x.strip() for x in args.only.split(",") if x.strip())
    if not only or only - set(SCENARIOS):
        parser.error(f"--only takes some of: {', '.join(SCENARIOS)}")
    return Options(
        seconds=args.seconds,
        warmup_seconds=args.warmup_seconds,
        connections=args.connections,
        threads=args.threads,
        rounds=args.rounds,
        writes=args.writes,
        rate=args.rate,
        smtp_pool=args.smtp_pool,
        out=args.out,
        doc=(DOC if only == set(SCENARIOS) else None)
        if args.doc is None
        else (Path(args.doc) if args.doc else None),
        only=only,
        relay_rows=args.relay_rows,
        emails=args.emails,
        workers=args.workers,
        peer_outbox=args.peer_outbox,
        peer_rows=args.peer_rows,
    )


def _terminate(signum: int, frame: FrameType | None) -> None:
    # While the stack starts (no event loop yet): SIGTERM unwinds through the `finally`s.
    raise SystemExit(128 + signum)


async def measure_until_signalled(stack: Stack, options: Options) -> list[Row]:
    """Run the scenarios; SIGTERM cancels them (the consumers and clients close on the way)."""
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
    loadavg = " ".join(f"{x:.1f}" for x in os.getloadavg())
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="agora-bench-") as tmp:
        infra: Infra | None = None
        try:
            with console.status("starting the stack and the bare app..."):
                infra, stack, times, rss = start_stack(Path(tmp), options)
            startup_s = time.perf_counter() - began
            console.print(f"stack up in {startup_s:.1f} s (bring_up {times.total_s:.1f} s); "
                          "measuring")  # fmt: skip
            rows = asyncio.run(measure_until_signalled(stack, options))
            if "startup" in options.only:
                rows += startup_rows(times, rss)
                console.print(
                    "start-up steps: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.steps.items())
                )
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
        rows, options, started_at=started_at, loadavg=loadavg, startup_s=round(startup_s, 2),
        total_s=round(total_s, 2),
    )  # fmt: skip
    print_table(report, rows)
    options.out.mkdir(parents=True, exist_ok=True)
    json_path = options.out / f"{started_at.replace(':', '').replace('-', '')}.json"
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    written = [str(json_path)]
    if options.doc is not None:
        options.doc.write_text(markdown(report, rows) + kept_notes(options.doc))
        written.append(str(options.doc))
    missed = [row.name for row in rows if row.met() is False]
    console.print(f"wrote {' and '.join(written)} in {total_s:.0f} s")
    console.print(f"goals missed: {', '.join(missed)}" if missed else "every goal met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
