"""Open-loop latency: samples, a fixed-rate scheduler, and a topic reader per partition."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agora_kit.kafka import PRODUCER_LINGER_MS, PRODUCER_MAX_BATCH_BYTES
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

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


def _reader(bootstrap: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
        request_timeout_ms=10_000,
    )


@dataclass
class TopicReader:
    """One assigned consumer per partition of a topic (fetch wait 10 ms), each from its end.

    One per partition, not one over all of them: on the embedded broker a consumer assigned to
    several partitions got empty fetches for some of them for as long as it ran while their
    high watermark grew (the 201 -> event row saw 0 of 600 events after the throughput rounds);
    a consumer per partition read the same offsets at once, every time.
    """

    consumers: list[AIOKafkaConsumer]
    _keeping_up: list[asyncio.Task[None]] = field(default_factory=list)

    def keep_up(self) -> None:
        """Read and drop records in the background until :meth:`settle` (stays at the end)."""

        async def drain(consumer: AIOKafkaConsumer) -> None:
            while True:
                await consumer.getmany(timeout_ms=100)

        self._keeping_up = [asyncio.create_task(drain(c)) for c in self.consumers]

    async def settle(self) -> None:
        """Stop reading in the background; the next read starts where it stopped."""
        for task in self._keeping_up:
            task.cancel()
        await asyncio.gather(*self._keeping_up, return_exceptions=True)
        self._keeping_up = []

    async def catch_up(self, timeout: float = 60) -> None:
        """Read up to the high watermarks, so the next samples do not wait behind a backlog."""
        await read_until(self, {}, lambda _: None, lambda: False, timeout=timeout, until=self)

    async def caught_up(self) -> bool:
        """Whether every consumer has read up to its partition's high watermark."""
        for consumer in self.consumers:
            (tp,) = consumer.assignment()
            highwater = consumer.highwater(tp)
            if highwater is None or await consumer.position(tp) < highwater:
                return False
        return True

    async def stop(self) -> None:
        """Stop every consumer (bounded)."""
        await self.settle()
        await asyncio.gather(
            *(asyncio.wait_for(c.stop(), 10) for c in self.consumers), return_exceptions=True
        )


async def topic_reader(bootstrap: str, topic: str) -> TopicReader:
    """A reader of every partition of ``topic``, caught up to its end.

    It reads each partition from its beginning up to the high watermark: the embedded broker
    answers the end offset with the first offset of its newest second of records (seen: 1682
    for a log ending at 2739), and a fetch from inside a stored batch can return nothing.
    """
    reader = TopicReader([_reader(bootstrap)])
    first = reader.consumers[0]
    await asyncio.wait_for(first.start(), 15)
    try:
        deadline = time.monotonic() + 15
        parts: list[TopicPartition] = []
        while not parts and time.monotonic() < deadline:
            await first.topics()
            parts = [
                TopicPartition(topic, p) for p in sorted(first.partitions_for_topic(topic) or ())
            ]
            if not parts:
                await asyncio.sleep(0.2)
        if not parts:
            raise RuntimeError(f"{topic} has no partitions")
        for _ in parts[1:]:
            reader.consumers.append(consumer := _reader(bootstrap))
            await asyncio.wait_for(consumer.start(), 15)
        for consumer, tp in zip(reader.consumers, parts, strict=True):
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
        # Read the whole log up to the high watermarks (the fetches report them exactly), so
        # the first samples do not wait behind that backlog. From the beginning, not from the
        # end offset: that offset can fall inside a stored batch, and from there this broker's
        # fetches returned nothing at all (seen after the throughput rounds: 37 records short
        # of the high watermark for 30 s, then 0 of 600 events).
        await reader.catch_up()
    except BaseException:
        await reader.stop()
        raise
    return reader


async def read_until(
    reader: TopicReader,
    seen: dict[str, float],
    key_of: Callable[[bytes], str | None],
    done: Callable[[], bool],
    *,
    timeout: float,
    until: TopicReader | None = None,
) -> None:
    """Note when each record arrives (by ``key_of(value)``) until ``done()`` or the timeout.

    Each partition's consumer reads on its own, so a record is noted as soon as its own fetch
    returns. With ``until``, stop once it has caught up instead (and fail at the timeout).
    """
    deadline = time.perf_counter() + timeout
    caught = asyncio.Event()

    async def read(consumer: AIOKafkaConsumer) -> None:
        while not done() and not caught.is_set() and time.perf_counter() < deadline:
            batch = await consumer.getmany(timeout_ms=50)
            now = time.perf_counter()
            for record in (r for rs in batch.values() for r in rs):
                key = key_of(record.value or b"")
                if key is not None:
                    seen.setdefault(key, now)
            if until is not None and await until.caught_up():
                caught.set()

    await asyncio.gather(*(read(consumer) for consumer in reader.consumers))
    if until is not None and not caught.is_set():
        # Seen once after the throughput rounds: a partition's reported high watermark stayed
        # ahead of what its fetches returned. The samples are matched by key, so measuring
        # goes on; the line says the first samples may have waited behind older records.
        pairs = [(c, t) for c in reader.consumers for t in c.assignment()]
        positions = [await c.position(t) for c, t in pairs]
        common.console.print(
            f"  the topic reader did not reach the high watermarks within {timeout:.0f} s "
            f"(positions {positions}, high watermarks {[c.highwater(t) for c, t in pairs]})"
        )


def say(what: str, lat: Latency) -> None:
    """Print one latency scenario's progress line."""
    common.console.print(
        f"  {what}: p50 {lat.pct(0.5):.1f} ms, p99 {lat.pct(0.99):.1f} ms, "
        f"{len(lat.samples_ms)} samples, {lat.errors} errors"
    )


def relay_producer(bootstrap: str, *, request_timeout_ms: int) -> AIOKafkaProducer:
    """An unstarted producer with the relay's settings (acks=all, its linger and batch size)."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=PRODUCER_LINGER_MS,
        max_batch_size=PRODUCER_MAX_BATCH_BYTES,
        request_timeout_ms=request_timeout_ms,
    )


async def measured(
    tap: TopicReader,
    seen: dict[str, float],
    key_of: Callable[[bytes], str | None],
    sent: Mapping[str, float],
    one: Callable[[int, float], Awaitable[None]],
    options: common.Options,
) -> tuple[float, BaseException | None]:
    """Run ``one`` open loop while ``tap`` notes arrivals in ``seen``; stop the tap.

    The reader goes on until every key in ``sent`` was seen (at most 30 s past the last
    write). Return the loop's elapsed seconds and what the reader raised, if it did.
    """
    finished = asyncio.Event()
    reader = asyncio.create_task(
        read_until(
            tap, seen, key_of, lambda: finished.is_set() and sent.keys() <= seen.keys(),
            timeout=options.writes / options.rate + 60,
        )
    )  # fmt: skip
    try:
        elapsed = await open_loop(options.writes, options.rate, one)
        finished.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, 30)
    finally:
        reader.cancel()
        (outcome,) = await asyncio.gather(reader, return_exceptions=True)
        await tap.stop()
    return elapsed, outcome if isinstance(outcome, BaseException) else None
