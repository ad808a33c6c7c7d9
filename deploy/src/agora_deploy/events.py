"""``agora events tail TOPIC``: print the CloudEvents on a topic as they arrive."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

from agora_contract import ContractError, Envelope
from aiokafka import AIOKafkaConsumer


def describe(raw: bytes | None) -> dict[str, object]:
    """Return a printable view of one record value (a CloudEvent, or why it is not one)."""
    if raw is None:
        return {"error": "tombstone (no value)"}
    try:
        envelope = Envelope.from_bytes(raw)
    except ContractError as exc:
        return {"error": f"not a CloudEvent: {exc}", "raw": raw[:200].decode(errors="replace")}
    return json.loads(envelope.to_bytes())  # type: ignore[no-any-return]


async def tail(
    bootstrap: str,
    topic: str,
    *,
    from_beginning: bool,
    limit: int | None,
    idle_timeout_s: float | None,
    emit: Callable[[dict[str, object]], None],
) -> int:
    """Consume ``topic`` without a group (nothing committed) and emit each event; return count."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        fetch_max_wait_ms=100,
        request_timeout_ms=10_000,
    )
    await asyncio.wait_for(consumer.start(), 15)
    count = 0
    last = time.monotonic()
    try:
        while limit is None or count < limit:
            batch = await consumer.getmany(timeout_ms=500)
            records = [r for part in batch.values() for r in part]
            if not records:
                if idle_timeout_s is not None and time.monotonic() - last > idle_timeout_s:
                    break
                continue
            last = time.monotonic()
            for record in records:
                view = describe(record.value)
                view["_kafka"] = {
                    "partition": record.partition,
                    "offset": record.offset,
                    "key": record.key.decode(errors="replace") if record.key else None,
                }
                emit(view)
                count += 1
                if limit is not None and count >= limit:
                    break
    finally:
        await consumer.stop()
    return count
