"""The notifier: ItemCreated events to emails/s against raw aiosmtplib over pooled connections."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
import uuid
from collections.abc import Callable
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import aiosmtplib
import asyncpg
import httpx
from agora_contract import Envelope, ItemCreated, topics
from agora_kit.outbox import DEFAULT_TABLE_NAME, decode_headers

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
    stamps: list[float] = []

    def take(messages: list[dict[str, Any]]) -> int:
        stamps[:] = [
            sink.stamp(m)
            for m in messages
            if fragment in str(m.get("Subject", "")) and sink.sent_to(m, address)
        ]
        return len(stamps)

    await sink.collect(mail, take, want, timeout=timeout)
    return len(stamps), max(stamps, default=float("nan"))


async def notifier_rate(
    bootstrap: str,
    mail: httpx.AsyncClient,
    address: str,
    template: tuple[bytes, bytes | None, list[tuple[str, bytes]]],
    count: int,
) -> figures.Rate:
    """``count`` ItemCreated events for one account with item mail on, produced at once onto
    items.events; the time from the first send to the last email's receive stamp."""
    run = uuid.uuid4().hex[:6]
    base = 900_000_000 + int(run, 16) % 1000 * 100_000  # ids no real item takes
    producer = openloop.relay_producer(bootstrap, request_timeout_ms=30_000)
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
    return figures.Rate(count, latest - began)


async def raw_smtp_rate(smtp_url: str, count: int, pool: int) -> figures.Rate:
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
    return figures.Rate(count - errors, seconds, errors, time.process_time() - cpu)


async def notifier_rows(
    stack: system.Stack, options: common.Options, items: httpx.AsyncClient, mail: httpx.AsyncClient,
    writer: accounts.Account,
) -> list[figures.Row]:  # fmt: skip
    """The notifier's emails/s against raw aiosmtplib's over pooled connections."""
    n = options.emails
    common.console.print(f"notifier: {n} emails raw, then {n} ItemCreated through the notifier")
    raw = await raw_smtp_rate(stack.smtp, n, options.smtp_pool)
    common.console.print(
        f"  raw aiosmtplib pooled: {raw.per_s:,.0f} emails/s ({raw.seconds:.1f} s)"
    )
    template = await template_event(
        system.items_database(stack.postgres),
        lambda: accounts.create_item(
            items, "/api/v1/items", "bench-template", headers=writer.headers
        ),
    )
    await accounts.wait_drained(stack.items, stack.notifier)
    through = await notifier_rate(stack.kafka, mail, writer.email, template, n)
    common.console.print(f"  notifier: {through.per_s:,.0f} emails/s ({through.seconds:.1f} s)")
    raw_row = figures.rate_row(
        f"raw aiosmtplib pooled ({n})", f"{n} sends over {options.smtp_pool} open connections", raw
    )
    row = figures.rate_row(
        f"notifier ({n} emails)",
        "ItemCreated on items.events -> 'is listed' email in the sink",
        through,
    )
    raw_row.ratio, raw_row.ratio_of = 1.0, "reference"
    row.ratio = common.div(through.per_s, raw.per_s)
    row.ratio_of, row.goal = "emails/s / raw aiosmtplib", ">=0.5x"  # fmt: skip
    return [raw_row, row]
