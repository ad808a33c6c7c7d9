"""The relay: an outbox backlog drained against raw aiokafka's batched produce rate."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import asyncpg
import sqlalchemy as sa
from agora_deploy.stack import database_url
from agora_kit.kafka import PRODUCER_LINGER_MS
from agora_kit.outbox import DEFAULT_TABLE_NAME, notify_channel, outbox_table
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

if TYPE_CHECKING:
    # mypy names files by package path from the repo root (explicit_package_bases); run as a
    # script, this folder is on sys.path and each module here is a top-level one.
    from bench import common, figures, openloop, system
else:
    import common
    import figures
    import openloop
    import system

RELAY_TOPIC = "bench.relay"
#: About the size of an ItemCreated envelope on the wire (565 bytes in FACTS-style runs).
PAD = "x" * 480


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


async def raw_produce(bootstrap: str, count: int) -> figures.Rate:
    """Raw aiokafka, batched: ``count`` sends in flight at once with the relay's settings."""
    producer = openloop.relay_producer(bootstrap, request_timeout_ms=30_000)
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
    return figures.Rate(count - errors, seconds, errors, time.process_time() - cpu)


async def relay_drain(dsn: str, count: int, *, progress: Callable[[str], None]) -> figures.Rate:
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
    return figures.Rate(count, seconds)


async def relay_rows(stack: system.Stack, options: common.Options) -> list[figures.Row]:
    """Drain an outbox backlog against the broker's own batched produce rate."""
    n = options.relay_rows
    common.console.print(f"relay: {n:,} messages raw, then a backlog of {n:,} outbox rows")
    partitions = len(await system.items_partitions(stack.kafka))
    await ensure_topic(stack.kafka, RELAY_TOPIC, partitions)
    raw = await raw_produce(stack.kafka, n)
    common.console.print(f"  raw aiokafka batched: {raw.per_s:,.0f} msg/s ({raw.seconds:.1f} s)")
    relay = await relay_drain(
        system.items_database(stack.postgres), n, progress=common.console.print
    )
    common.console.print(f"  relay drain: {relay.per_s:,.0f} rows/s ({relay.seconds:.1f} s)")
    raw_row = figures.rate_row(
        f"raw aiokafka batched ({n:,})",
        "every send in flight at once, the relay's producer settings",
        raw,
    )
    relay_row = figures.rate_row(f"relay drain ({n:,} rows)",
                         "a committed outbox backlog until every row is marked published",
                         relay)  # fmt: skip
    raw_row.ratio, raw_row.ratio_of = 1.0, "reference"
    relay_row.ratio = common.div(relay.per_s, raw.per_s)
    relay_row.ratio_of, relay_row.goal = "msg/s / raw aiokafka batched", ">=0.5x"
    rows = [raw_row, relay_row]
    peers = {
        "library defaults": (),
        "8 workers, fetch 100": ("--max-workers", "8", "--fetch-batch-size", "100"),
    }
    for label, extra in peers.items() if options.peer_outbox else ():
        peer = await peer_outbox(stack, options, *extra)
        common.console.print(
            f"  faststream-outbox ({label}): {peer.per_s:,.0f} rows/s ({peer.seconds:.1f} s)"
        )
        peer_row = figures.rate_row(f"faststream-outbox 0.19, {label} ({options.peer_rows:,} rows)",
                            "the Python peer relaying a backlog to the same broker "
                            f"(bench/peer_outbox.py, {label})", peer)  # fmt: skip
        peer_row.ratio = common.div(relay.per_s, peer.per_s)
        peer_row.ratio_of, peer_row.goal = "relay msg/s / this", ">1.0x"
        rows.append(peer_row)
    return rows


async def peer_outbox(stack: system.Stack, options: common.Options, *extra: str) -> figures.Rate:
    """Run bench/peer_outbox.py with the given interpreter on its own database."""
    server = database_url(stack.postgres, "postgres", driver="postgresql")
    conn = await asyncpg.connect(server, timeout=10)
    try:
        if not await conn.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", common.PEER_DATABASE
        ):
            await conn.execute(f"CREATE DATABASE {common.PEER_DATABASE}")
    finally:
        await conn.close(timeout=10)
    argv = [
        options.peer_outbox, str(common.BENCH / "peer_outbox.py"),
        "--dsn", database_url(stack.postgres, common.PEER_DATABASE),
        "--bootstrap", stack.kafka, "--topic", RELAY_TOPIC,
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
    return figures.Rate(int(data["rows"]), float(data["seconds"]))
