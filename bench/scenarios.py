"""The bench's scenarios beyond the request path: relay, notifier, start-up, memory, workers.

Each pairs an Agora figure with its peer measured in the same run on the same machine:

- relay: drain an outbox backlog of ``rows`` rows against raw aiokafka producing as many
  messages, batched, with the relay's producer settings, to the same broker;
- notifier: ``emails`` ``ItemCreated`` events through the notifier into the mail sink against
  raw aiosmtplib sending as many emails over pooled connections to the same sink;
- start-up: the whole ``bring_up`` (what ``agora up`` runs) against its slowest single step,
  each step timed inside the same start;
- memory: each service's RSS at idle (its process tree), against 150 MB;
- workers: ``POST /api/v1/items`` on an items process started with ``--workers 2`` against
  the stack's one-worker items process (``run.py`` interleaves the two in its wrk rounds).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import asyncpg
import httpx
import psutil
import sqlalchemy as sa
from agora_contract import Envelope, ItemCreated, topics
from agora_deploy import up
from agora_deploy.infra import Infra
from agora_deploy.launchers.process import ManagedProcess, free_port
from agora_deploy.services import available_services
from agora_deploy.stack import ComponentInfo, database_url
from agora_kit.kafka import PRODUCER_LINGER_MS, PRODUCER_MAX_BATCH_BYTES
from agora_kit.outbox import DEFAULT_TABLE_NAME, decode_headers, notify_channel, outbox_table
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

RELAY_TOPIC = "bench.relay"
#: The idle RSS goal per service (issue 12).
RSS_GOAL_MB = 150.0
SERVICES = ("users", "items", "notifier")
#: About the size of an ItemCreated envelope on the wire (565 bytes in FACTS-style runs).
PAD = "x" * 480


# --- start-up -------------------------------------------------------------------------------


@dataclass
class StartTimes:
    """Seconds per step of one ``bring_up``, in the order they ran."""

    steps: dict[str, float] = field(default_factory=dict)
    total_s: float = 0.0

    def slowest(self) -> tuple[str, float]:
        """The slowest single component start (migrations and topic creation are not one)."""
        starts = {k: v for k, v in self.steps.items() if k.startswith("start ")}
        name = max(starts, key=lambda k: starts[k])
        return name, starts[name]


class TimedInfra(Infra):
    """An ``Infra`` that notes how long each backing service takes to start."""

    times: StartTimes

    def _timed(self, name: str, start: Callable[[], ComponentInfo]) -> ComponentInfo:
        began = time.perf_counter()
        try:
            return start()
        finally:
            self.times.steps[f"start {name}"] = time.perf_counter() - began

    def start_postgres(self) -> ComponentInfo:
        """Start PostgreSQL, timed."""
        return self._timed("postgres", super().start_postgres)

    def start_redis(self) -> ComponentInfo:
        """Start Redis, timed."""
        return self._timed("redis", super().start_redis)

    def start_kafka(self) -> ComponentInfo:
        """Start the broker (with its storage), timed."""
        return self._timed("kafka", super().start_kafka)

    def start_mail(self) -> ComponentInfo:
        """Start the mail sink, timed."""
        return self._timed("mail", super().start_mail)


@contextlib.contextmanager
def timed_bring_up(times: StartTimes) -> Iterator[None]:
    """Time every step ``agora_deploy.up.bring_up`` takes (it calls these module globals)."""
    originals = {
        name: getattr(up, name)
        for name in ("create_topics", "migrate", "start_service", "start_stack_gateway")
    }

    def wrap(name: str, label: Callable[..., str]) -> Callable[..., Any]:
        original = originals[name]

        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                times.steps[label(*args)] = time.perf_counter() - began

        return timed

    up.create_topics = wrap("create_topics", lambda *a: "create topics")
    up.migrate = wrap("migrate", lambda spec, *a: f"migrate {spec.name}")
    up.start_service = wrap("start_service", lambda infra, spec, *a: f"start {spec.name}")
    up.start_stack_gateway = wrap("start_stack_gateway", lambda *a: "start gateway")
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(up, name, original)


# --- memory ---------------------------------------------------------------------------------


def idle_rss_mb(infra: Infra, *, settle_s: float = 5.0) -> dict[str, float]:
    """Each service's RSS (its process tree, uvicorn's workers included), in MiB, at idle."""
    time.sleep(settle_s)  # the first seconds after ready still import and warm caches
    found: dict[str, float] = {}
    for name in SERVICES:
        info = infra.components.get(name)
        if info is None or info.pid is None:
            continue
        root = psutil.Process(info.pid)
        rss = 0
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                rss += proc.memory_info().rss
        found[name] = rss / 2**20
    return found


# --- workers --------------------------------------------------------------------------------


def start_items_workers(infra: Infra, workers: int) -> tuple[str, ManagedProcess]:
    """A second items process with ``--workers N`` on the same database; the caller stops it."""
    spec = next(s for s in available_services() if s.name == "items")
    urls: dict[str, str] = {
        name: infra.components[name].url for name in SERVICES if name in infra.components
    }
    gateway = infra.components.get("gateway")
    urls["gateway_port"] = gateway.url.rsplit(":", 1)[-1] if gateway else "8080"
    env = up.service_env(infra, spec, urls)
    metrics = infra.state_dir / "metrics" / f"items-w{workers}"
    metrics.mkdir(parents=True, exist_ok=True)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    port = free_port()
    argv = [
        sys.executable, "-m", "uvicorn", "--factory", spec.app, "--host", "127.0.0.1",
        "--port", str(port), "--no-access-log", "--timeout-graceful-shutdown", "10",
        "--workers", str(workers),
    ]  # fmt: skip
    process = ManagedProcess(
        f"items-w{workers}",
        argv,
        infra.log_dir / f"items-w{workers}.log",
        env=env,
        cwd=spec.path,
        die_with_parent=True,
        ports=(port,),
    )
    process.start()
    infra.add_process(
        ComponentInfo(f"items-w{workers}", f"http://127.0.0.1:{port}", process.pid, "running"),
        process,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return url, process
        if not process.alive():
            raise RuntimeError(f"items --workers {workers} exited; see {process.log_path}")
        time.sleep(0.3)
    raise RuntimeError(f"items --workers {workers} was not ready within 90 s")


# --- relay ----------------------------------------------------------------------------------


@dataclass
class Rate:
    """``count`` units done in ``seconds``."""

    count: int
    seconds: float
    errors: int = 0
    client_cpu_s: float = 0.0

    @property
    def per_s(self) -> float:
        """Units per second."""
        return self.count / self.seconds if self.seconds > 0 else float("nan")


def items_database(server_url: str) -> str:
    """A plain asyncpg DSN of the items database on the stack's Postgres."""
    spec = next(s for s in available_services() if s.name == "items")
    return database_url(server_url, spec.database, driver="postgresql")


async def ensure_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """Create ``topic`` (never left to broker auto-creation); fine when it exists."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await asyncio.wait_for(admin.start(), 15)
    try:
        with contextlib.suppress(Exception):
            await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


def relay_value(index: int) -> bytes:
    """One message body of about an ItemCreated envelope's size."""
    return json.dumps({"id": index, "pad": PAD}).encode()


async def raw_produce(bootstrap: str, count: int) -> Rate:
    """Raw aiokafka, batched: ``count`` sends in flight at once with the relay's settings."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=PRODUCER_LINGER_MS,
        max_batch_size=PRODUCER_MAX_BATCH_BYTES,
        request_timeout_ms=30_000,
    )
    await asyncio.wait_for(producer.start(), 15)
    cpu = time.process_time()
    try:
        began = time.perf_counter()
        futures = [
            await producer.send(RELAY_TOPIC, relay_value(i), key=str(i).encode())
            for i in range(count)
        ]
        results = await asyncio.wait_for(
            asyncio.gather(*futures, return_exceptions=True), 60 + count / 1000
        )
        seconds = time.perf_counter() - began
    finally:
        await asyncio.wait_for(producer.stop(), 10)
    errors = sum(isinstance(r, BaseException) for r in results)
    return Rate(count - errors, seconds, errors, time.process_time() - cpu)


async def relay_drain(dsn: str, count: int, *, progress: Callable[[str], None]) -> Rate:
    """Commit ``count`` outbox rows at once into the items outbox, wake the relay, and time
    until every one of them is published (acknowledged by the broker and marked)."""
    table = outbox_table(sa.MetaData(), DEFAULT_TABLE_NAME)
    run = uuid.uuid4().hex[:8]
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        began_insert = time.perf_counter()
        await conn.execute(
            f"""INSERT INTO {DEFAULT_TABLE_NAME} (event_id, topic, key, value, headers)
            SELECT gen_random_uuid(), $1, convert_to($2 || g::text, 'UTF8'),
                   convert_to('{{"id": ' || g::text || ', "pad": "{PAD}"}}', 'UTF8'), '[]'::jsonb
            FROM generate_series(1, $3::int) AS g""",  # noqa: S608 - constants only
            RELAY_TOPIC,
            run,
            count,
            timeout=300,
        )
        progress(f"  relay: {count:,} rows committed in {time.perf_counter() - began_insert:.1f} s")
        began = time.perf_counter()
        await conn.execute("SELECT pg_notify($1, '')", notify_channel(table), timeout=10)
        deadline = began + 60 + count / 200
        left = count
        query = (
            f"SELECT count(*) FROM {DEFAULT_TABLE_NAME} "  # noqa: S608 - constants only
            "WHERE published_at IS NULL AND topic = $1"
        )
        while time.perf_counter() < deadline:
            left = int(await conn.fetchval(query, RELAY_TOPIC, timeout=30))
            if left == 0:
                break
            await asyncio.sleep(0.1)
        seconds = time.perf_counter() - began
    finally:
        await conn.close(timeout=10)
    if left:
        raise RuntimeError(f"the relay left {left:,} of {count:,} rows after {seconds:.0f} s")
    return Rate(count, seconds)


# --- notifier -------------------------------------------------------------------------------


async def template_event(
    dsn: str, create: Callable[[], Any], *, timeout: float = 30.0
) -> tuple[bytes, bytes | None, list[tuple[str, bytes]]]:
    """The ItemCreated message the items service enqueues for one new item (value, key,
    headers), read from its outbox row: the notifier scenario clones it, so its events are
    exactly what items sends."""
    item_id = str(await create())
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = await conn.fetch(
                f"SELECT key, value, headers::text AS headers FROM {DEFAULT_TABLE_NAME} "  # noqa: S608
                "WHERE topic = $1 AND value IS NOT NULL ORDER BY id DESC LIMIT 50",
                topics.ITEMS_EVENTS,
                timeout=10,
            )
            for row in rows:
                envelope = Envelope.from_bytes(bytes(row["value"]))
                if envelope.type == ItemCreated.event_type and envelope.subject == item_id:
                    headers = decode_headers(json.loads(row["headers"] or "[]"))
                    return bytes(row["value"]), row["key"], headers
            await asyncio.sleep(0.2)
    finally:
        await conn.close(timeout=10)
    raise RuntimeError(f"no ItemCreated outbox row for item {item_id} within {timeout:.0f} s")


def clone_event(
    template: tuple[bytes, bytes | None, list[tuple[str, bytes]]], item_id: int, name: str
) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """A new ItemCreated like ``template``: new event id, item id and name."""
    value, _key, headers = template
    doc = json.loads(value)
    old_id, old_subject = str(doc["id"]), str(doc["subject"])
    new_id = str(uuid.uuid4())
    doc = copy.deepcopy(doc)
    doc["id"], doc["subject"] = new_id, str(item_id)
    doc["data"]["item_id"], doc["data"]["name"] = item_id, name
    swap = {old_id.encode(): new_id.encode(), old_subject.encode(): str(item_id).encode()}
    new_headers = [(k, swap.get(v, v)) for k, v in headers]
    return json.dumps(doc, separators=(",", ":")).encode(), str(item_id).encode(), new_headers


async def count_sink(
    mail: httpx.AsyncClient, address: str, fragment: str, want: int, *, timeout: float
) -> tuple[int, float]:
    """Wait until ``want`` emails to ``address`` whose subject holds ``fragment`` are in the
    sink; return how many arrived and the latest receive stamp (epoch seconds)."""
    deadline = time.monotonic() + timeout
    count, latest = 0, float("nan")
    while time.monotonic() < deadline:
        resp = await mail.get("/api/v1/messages", params={"limit": 50_000})
        resp.raise_for_status()
        stamps = [
            datetime.fromisoformat(str(m["Created"]).replace("Z", "+00:00")).timestamp()
            for m in resp.json()["messages"]
            if fragment in str(m.get("Subject", ""))
            and address.lower() in [str(p.get("Address", "")).lower() for p in m.get("To") or []]
        ]
        count, latest = len(stamps), max(stamps, default=float("nan"))
        if count >= want:
            break
        await asyncio.sleep(0.5)
    return count, latest


async def notifier_rate(
    bootstrap: str,
    mail: httpx.AsyncClient,
    address: str,
    template: tuple[bytes, bytes | None, list[tuple[str, bytes]]],
    count: int,
) -> Rate:
    """``count`` ItemCreated events for one account with item mail on, produced at once onto
    items.events; the time from the first send to the last email's receive stamp."""
    run = uuid.uuid4().hex[:6]
    base = 900_000_000 + int(run, 16) % 1000 * 100_000  # ids no real item takes
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=PRODUCER_LINGER_MS,
        max_batch_size=PRODUCER_MAX_BATCH_BYTES, request_timeout_ms=30_000,
    )  # fmt: skip
    await asyncio.wait_for(producer.start(), 15)
    try:
        began = time.time()
        futures = []
        for i in range(count):
            value, key, headers = clone_event(template, base + i, f"nb-{run}-{i}")
            futures.append(
                await producer.send(topics.ITEMS_EVENTS, value, key=key, headers=headers)
            )
        await asyncio.wait_for(asyncio.gather(*futures), 60)
    finally:
        await asyncio.wait_for(producer.stop(), 10)
    got, latest = await count_sink(mail, address, f"nb-{run}-", count, timeout=60 + count / 5)
    if got < count:
        raise RuntimeError(f"the notifier delivered {got} of {count} emails")
    return Rate(count, latest - began)


async def raw_smtp_rate(smtp_url: str, count: int, pool: int) -> Rate:
    """Raw aiosmtplib: ``count`` emails to the same sink over ``pool`` open connections, each
    sending one after another (what a pooled sender does at full speed)."""
    host, _, port = smtp_url.split("://", 1)[-1].rsplit("@", 1)[-1].partition(":")
    clients = [
        aiosmtplib.SMTP(hostname=host, port=int(port or 25), timeout=10, start_tls=False)
        for _ in range(pool)
    ]
    for client in clients:
        await client.connect()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    errors = 0

    async def worker(client: aiosmtplib.SMTP) -> None:
        nonlocal errors
        while not queue.empty():
            i = queue.get_nowait()
            message = EmailMessage()
            message["From"] = "bench@example.com"
            message["To"] = f"rate-{i}@example.com"
            message["Subject"] = f"raw rate {i}"
            message.set_content("A raw aiosmtplib send, for the notifier's baseline.\n")
            try:
                await client.send_message(message)
            except aiosmtplib.SMTPException:
                errors += 1

    cpu = time.process_time()
    began = time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.gather(*(worker(c) for c in clients)), 60 + count / 10)
    finally:
        seconds = time.perf_counter() - began
        for client in clients:
            with contextlib.suppress(aiosmtplib.SMTPException):
                await client.quit()
    return Rate(count - errors, seconds, errors, time.process_time() - cpu)
