"""Subscribe to users.events: commit each offset after its effect, deduplicate on `id`."""

import asyncio
import logging
import os
from uuid import UUID

from agora_contract import ContractError, Event, UserDeleted, UserRegistered, decode
from agora_contract.envelope import Envelope
from agora_contract.topics import USERS_EVENTS
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

log = logging.getLogger("crm-sync")


async def apply(event: Event) -> None:
    """Do this subscriber's work for one event (here: log it)."""
    match event:
        case UserRegistered(user_id=user_id, name=name):
            log.info("welcome user %s (%s)", user_id, name)
        case UserDeleted(user_id=user_id):
            log.info("erase everything about user %s", user_id)
        case _:
            pass  # events this subscriber does not need


async def handle(record: ConsumerRecord, seen: set[UUID]) -> None:
    """Apply one record's event unless its `id` was applied before."""
    try:
        envelope = Envelope.from_bytes(record.value)
        event = decode(envelope)
    except ContractError:
        # Unknown (newer) type or invalid: skip it here; a real service parks it as a dead letter.
        log.warning("skipping %s[%s]@%s", record.topic, record.partition, record.offset)
        return
    if envelope.id in seen:
        return  # a redelivery or a replay: the effect already happened
    await apply(event)
    # In production, record the id in the same database transaction as the effect.
    seen.add(envelope.id)


async def main() -> None:
    """Consume users.events in the `crm-sync` group until cancelled."""
    consumer = AIOKafkaConsumer(
        USERS_EVENTS,
        bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        group_id="crm-sync",
        enable_auto_commit=False,  # commit only after the effect: at-least-once
        auto_offset_reset="earliest",
    )
    seen: set[UUID] = set()
    await consumer.start()
    try:
        async for record in consumer:
            await handle(record, seen)
            partition = TopicPartition(record.topic, record.partition)
            await consumer.commit({partition: record.offset + 1})
    finally:
        await consumer.stop()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main())
