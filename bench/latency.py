"""Latency at a fixed write rate, open loop: 201 -> event and 201 -> email against the raw legs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import aiosmtplib
import httpx
from agora_contract import Envelope, ItemCreated, topics
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

if TYPE_CHECKING:
    # mypy names files by package path from the repo root (explicit_package_bases); run as a
    # script, this folder is on sys.path and each module here is a top-level one.
    from bench import accounts, common, figures, openloop, sink, system
else:
    import accounts
    import common
    import figures
    import openloop
    import sink
    import system


async def raw_broker(bootstrap: str, partitions: int, options: common.Options) -> openloop.Latency:
    """The broker's own produce -> consume latency at the write rate (the relay's producer
    settings: acks=all, the same linger and batch size; the same reader as the 201 -> event)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await asyncio.wait_for(admin.start(), 15)
    try:
        with contextlib.suppress(Exception):  # already there from an earlier run
            await admin.create_topics([NewTopic(common.RAW_TOPIC, partitions, 1)])
    finally:
        await admin.close()
    producer = openloop.relay_producer(bootstrap, request_timeout_ms=10_000)
    await asyncio.wait_for(producer.start(), 15)
    tap = await openloop.topic_reader(bootstrap, common.RAW_TOPIC)
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    errors = 0
    pad = "x" * 400  # about the size of an ItemCreated envelope

    def key_of(value: bytes) -> str | None:
        return str(json.loads(value)["id"])

    async def one(index: int, at: float) -> None:
        nonlocal errors
        sent[str(index)] = at
        value = json.dumps({"id": index, "pad": pad}).encode()
        try:
            future = await producer.send(common.RAW_TOPIC, value, key=str(index).encode())
            await asyncio.wait_for(future, 15)
        except Exception:
            errors += 1
            sent.pop(str(index), None)

    cpu = time.process_time()
    try:
        elapsed, _ = await openloop.measured(tap, seen, key_of, sent, one, options)
    finally:
        await asyncio.wait_for(producer.stop(), 10)
    lost = [k for k in sent if k not in seen]
    samples = [(seen[k] - t) * 1000 for k, t in sent.items() if k in seen]
    return openloop.Latency(samples, errors + len(lost), elapsed, time.process_time() - cpu)


async def raw_smtp(smtp_url: str, options: common.Options) -> openloop.Latency:
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
        elapsed = await openloop.open_loop(options.writes, options.rate, one)
    finally:
        while not pool.empty():
            with contextlib.suppress(aiosmtplib.SMTPException):
                await pool.get_nowait().quit()
    return openloop.Latency(samples, errors, elapsed, time.process_time() - cpu)


async def sink_times(
    mail: httpx.AsyncClient, address: str, subjects: set[str], *, timeout: float
) -> dict[str, float]:
    """Wait for an email to ``address`` per subject fragment; return when the sink got each
    (its ``Created`` stamp, epoch seconds, millisecond resolution)."""
    found: dict[str, float] = {}

    def take(messages: list[dict[str, Any]]) -> int:
        for message in messages:
            if not sink.sent_to(message, address):
                continue
            subject = str(message.get("Subject", ""))
            for fragment in subjects - found.keys():
                if fragment in subject:
                    found[fragment] = sink.stamp(message)
        return len(found)

    await sink.collect(mail, take, len(subjects), timeout=timeout)
    return found


async def write_latency(
    items: httpx.AsyncClient,
    mail: httpx.AsyncClient,
    bootstrap: str,
    account: accounts.Account,
    options: common.Options,
    events_tap: openloop.TopicReader | None = None,
) -> tuple[openloop.Latency, openloop.Latency]:
    """``options.writes`` items at ``options.rate``/s, open loop, by an account with item
    mail on: 201 -> ``ItemCreated`` on items.events, and 201 -> "is listed" email in the sink."""
    # Started with the stack and kept at the end since (run.py): a reader started now, behind
    # thousands of records on the embedded broker, did not always get through them.
    tap = events_tap or await openloop.topic_reader(bootstrap, topics.ITEMS_EVENTS)
    await tap.settle()
    # Its background reads stall while wrk runs (a blocking call): take it to the end now, or
    # the first samples would be timed behind the throughput rounds' thousands of events.
    await tap.catch_up()
    created: dict[str, float] = {}
    created_wall: dict[str, float] = {}
    names: dict[str, str] = {}
    seen: dict[str, float] = {}
    errors = 0

    def key_of(value: bytes) -> str | None:
        try:
            envelope = Envelope.from_bytes(value)
        except ValueError:  # not an envelope (e.g. an empty value): not one of ours
            return None
        return envelope.subject if envelope.type == ItemCreated.event_type else None

    run = uuid.uuid4().hex[:6]

    async def one(index: int, at: float) -> None:
        nonlocal errors
        name = f"bench-{run}-{index}"
        try:
            item_id = await accounts.create_item(
                items, "/api/v1/items", name, headers=account.headers
            )
        except httpx.HTTPError:
            errors += 1
            return
        created[str(item_id)] = time.perf_counter()
        created_wall[str(item_id)] = time.time()
        names[str(item_id)] = f'"{name}" is listed'

    cpu = time.process_time()
    elapsed, outcome = await openloop.measured(tap, seen, key_of, created, one, options)
    if outcome is not None:
        common.console.print(f"  the event reader failed: {outcome!r}")
    client_cpu = time.process_time() - cpu
    lost = [i for i in created if i not in seen]
    events = openloop.Latency(
        [(seen[i] - t) * 1000 for i, t in created.items() if i in seen],
        errors + len(lost),
        elapsed,
        client_cpu,
    )
    arrived = await sink_times(mail, account.email, set(names.values()), timeout=60)
    mails = [(arrived[names[i]] - t) * 1000 for i, t in created_wall.items() if names[i] in arrived]
    missing = len(names) - len(mails)
    return events, openloop.Latency(mails, errors + missing, elapsed, client_cpu)


async def wait_welcome(mail: httpx.AsyncClient, address: str) -> None:
    """Wait for the welcome email, so the notifier knows the address before its items."""
    got = await sink_times(mail, address, {"elcome"}, timeout=60)
    if not got:
        raise RuntimeError(f"no welcome email to {address} within 60 s")


async def latency_rows(
    stack: system.Stack, options: common.Options, items: httpx.AsyncClient, mail: httpx.AsyncClient,
    writer: accounts.Account, events_tap: openloop.TopicReader | None = None,
) -> list[figures.Row]:  # fmt: skip
    """201 -> event and 201 -> email at a fixed rate, against the raw legs."""
    common.console.print(f"latency: {options.writes} writes at {options.rate:g}/s, open loop")
    partitions = len(await system.items_partitions(stack.kafka))
    broker = await raw_broker(stack.kafka, partitions, options)
    openloop.say("raw aiokafka", broker)
    smtp = await raw_smtp(stack.smtp, options)
    openloop.say("raw aiosmtplib", smtp)
    events, mails = await write_latency(items, mail, stack.kafka, writer, options, events_tap)
    openloop.say("201 -> event", events)
    openloop.say("201 -> email", mails)
    rate = f"{options.rate:g}/s"
    raw_k = figures.latency_row(
        f"raw aiokafka @{rate}", "produce -> consume, relay's settings", broker
    )
    raw_k.ratio, raw_k.ratio_of = 1.0, "reference"
    ev = figures.latency_row(
        f"201 -> event @{rate}", f"POST 201 -> ItemCreated on {topics.ITEMS_EVENTS}", events
    )
    ev.ratio, ev.ratio_of, ev.goal = (
        common.div(ev.p99_ms, raw_k.p99_ms),
        "p99 / raw aiokafka",
        "<=2.0x",
    )
    raw_s = figures.latency_row(f"raw aiosmtplib @{rate}", "one send, pooled connections", smtp)
    raw_s.ratio, raw_s.ratio_of = 1.0, "reference"
    em = figures.latency_row(
        f"201 -> email @{rate}", "POST 201 -> 'is listed' email in the sink", mails
    )
    em.ratio = common.div(em.p99_ms, raw_k.p99_ms + raw_s.p99_ms)
    em.ratio_of, em.goal = "p99 / (raw aiokafka + raw aiosmtplib)", "<=2.0x"
    return [raw_k, ev, raw_s, em]
