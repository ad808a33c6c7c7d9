"""A batch of outbox rows handed to the producer, and what its acks say once they are in.

The relay keeps up to two batches in flight: while the broker writes one, the next waits in
the producer, so it goes out the moment the first is acknowledged (the producer has one
request in flight per broker). The batch behind holds no key of the batch ahead: should
the first fail, no later event of its keys is on the topic before it is sent again.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from agora_kit import tracing
from agora_kit.outbox import decode_headers


class AckTimeoutError(TimeoutError):
    """The producer did not resolve a send within our own bound: it is wedged."""


def _end_publish(span: Any, future: asyncio.Future[Any]) -> None:
    # Ends when the broker acknowledged (or the send failed); never-answered sends stay open
    # and are dropped with the producer.
    error = None if future.cancelled() else future.exception()
    tracing.end_publish(span, KafkaError("send cancelled") if future.cancelled() else error)


@dataclass
class Flight:
    """Rows sent in id order, one future per row sent (a failed send ends the list)."""

    rows: Sequence[Any]
    futures: list[asyncio.Future[Any]]
    #: The send that failed before every row was handed over, if one did.
    failure: BaseException | None = None
    sent_at: float = field(default_factory=time.monotonic)

    @property
    def keys(self) -> set[bytes | None]:
        """The message keys of the batch (None for a keyless row)."""
        return {row.key for row in self.rows}

    @property
    def ids(self) -> list[int]:
        """The ids of every row of the batch (sent or not)."""
        return [row.id for row in self.rows]

    def done(self) -> bool:
        """Whether every send has an answer (or a send failed: nothing more is coming)."""
        return self.failure is not None or all(f.done() for f in self.futures)

    async def wait(self, timeout_s: float) -> None:
        """Wait until every send has an answer, at most ``timeout_s``."""
        pending = [f for f in self.futures if not f.done()]
        if pending and self.failure is None:
            await asyncio.wait(pending, timeout=max(0.0, timeout_s))

    def outcome(self, ack_timeout_s: float) -> tuple[list[int], BaseException | None]:
        """The acknowledged prefix of the batch's ids, and what stopped it (None: all acked).

        Call it once :meth:`done`, or once ``ack_timeout_s`` passed since the send: an
        unanswered send is then an ``AckTimeoutError``.
        """
        acked: list[int] = []
        for row, future in zip(self.rows, self.futures, strict=False):
            if not future.done():
                return acked, AckTimeoutError(f"no ack within {ack_timeout_s}s")
            if future.cancelled():
                return acked, KafkaError("send cancelled")
            if (error := future.exception()) is not None:
                return acked, error
            acked.append(row.id)
        # Sending stops early only after a future failed, and that one is found above.
        return acked, self.failure


async def send_all(producer: AIOKafkaProducer, rows: Sequence[Any], *, timeout_s: float) -> Flight:
    """Hand ``rows`` to the producer in order; stop at the first send that fails."""
    flight = Flight(rows, [])
    failed = asyncio.Event()

    def on_done(future: asyncio.Future[Any]) -> None:
        # Also consumes the exception, so an abandoned future is never "unretrieved".
        if future.cancelled() or future.exception() is not None:
            failed.set()

    for row in rows:
        if failed.is_set():
            break  # a row already failed: sending more only adds re-sends out of order
        headers = decode_headers(row.headers)
        # A `relay publish` span per row, under the row's own stored traceparent.
        span = tracing.start_publish(row.topic, headers) if tracing.ENABLED else None
        try:
            async with asyncio.timeout(timeout_s):
                with tracing.activate(span):
                    future = await producer.send(
                        row.topic, value=row.value, key=row.key, headers=headers
                    )
        except Exception as exc:
            if span is not None:
                tracing.end_publish(span, exc)
            flight.failure = exc
            return flight
        if span is not None:
            future.add_done_callback(functools.partial(_end_publish, span))
        flight.futures.append(future)
        if future.done():
            on_done(future)  # a callback on a done future would only run after the loop
        else:
            future.add_done_callback(on_done)
    return flight
