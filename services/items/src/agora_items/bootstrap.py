"""The items service's runtime: built once in the lifespan from the kit's clients."""

from __future__ import annotations

from dataclasses import dataclass

from agora_contract.topics import ITEMS_EVENTS
from agora_kit.consumer import ConsumerLoop
from agora_kit.consumer.deadletters import DeadLetterStore
from agora_kit.kafka import create_producer
from agora_kit.lifecycle import Component
from agora_kit.outbox.relay import OutboxRelay
from agora_kit.outbox.relay_config import RelayConfig
from agora_kit.runtime import Platform
from agora_kit.topics import TopicBootstrap

from agora_items.config import ItemsSettings
from agora_items.consumer import build_consumer
from agora_items.models import outbox, tables


@dataclass(frozen=True, slots=True)
class ItemsRuntime:
    """The items service's own objects and its background components in start order."""

    dead_letters: DeadLetterStore
    #: The users-projection consumer (None when ``consumer_enabled`` is off).
    consumer: ConsumerLoop | None
    components: tuple[Component, ...]


def bootstrap(platform: Platform[ItemsSettings]) -> ItemsRuntime:
    """Build the runtime: topic bootstrap, outbox relay and users consumer, each if enabled."""
    settings = platform.settings
    components: list[Component] = []
    if settings.ensure_topics:
        components.append(TopicBootstrap(settings, [ITEMS_EVENTS, settings.users_topic]))
    if settings.relay_enabled:
        components.append(
            OutboxRelay(
                engine=platform.engine,
                outbox=outbox,
                producer_factory=lambda: create_producer(settings, client_id="items-relay"),
                registry=platform.registry,
                config=RelayConfig.from_settings(settings),
            )
        )
    consumer = None
    if settings.consumer_enabled:
        consumer = build_consumer(
            settings, session_factory=platform.session_factory, registry=platform.registry
        )
        components.append(consumer)
    return ItemsRuntime(
        dead_letters=DeadLetterStore(
            platform.session_factory, table=tables.dead_letter, retry_table=tables.retry
        ),
        consumer=consumer,
        components=tuple(components),
    )
