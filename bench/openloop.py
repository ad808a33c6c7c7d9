"""Open-loop latency: samples, a fixed-rate scheduler, and an assigned topic reader."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, TopicPartition

if TYPE_CHECKING:
    # mypy names files by package path from the repo root (explicit_package_bases); run as a
    # script, this folder is on sys.path and each module here is a top-level one.
    from bench import common
else:
    import common


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


def say(what: str, lat: Latency) -> None:
    """Print one latency scenario's progress line."""
    common.console.print(
        f"  {what}: p50 {lat.pct(0.5):.1f} ms, p99 {lat.pct(0.99):.1f} ms, "
        f"{len(lat.samples_ms)} samples, {lat.errors} errors"
    )
