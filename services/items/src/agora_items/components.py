"""Background parts of the items service: topic bootstrap, outbox relay, users consumer."""

from __future__ import annotations

from agora_contract.topics import ITEMS_EVENTS
from agora_kit.app import ServiceContext
from agora_kit.kafka import create_producer
from agora_kit.lifecycle import Component
from agora_kit.relay import OutboxRelay, RelayConfig
from agora_kit.topics import TopicBootstrap

from agora_items.config import ItemsSettings
from agora_items.consumer import build_consumer
from agora_items.models import outbox


def build_components(ctx: ServiceContext) -> list[Component]:
    """Return the components in start order (they stop in reverse)."""
    settings = ctx.settings
    assert isinstance(settings, ItemsSettings)
    components: list[Component] = []
    if settings.ensure_topics:
        components.append(TopicBootstrap(settings, [ITEMS_EVENTS, settings.users_topic]))
    if settings.relay_enabled:
        components.append(
            OutboxRelay(
                engine=ctx.engine,
                outbox=outbox,
                producer_factory=lambda: create_producer(settings, client_id="items-relay"),
                registry=ctx.registry,
                config=RelayConfig.from_settings(settings),
            )
        )
    if settings.consumer_enabled:
        consumer = build_consumer(
            settings, session_factory=ctx.session_factory, registry=ctx.registry
        )
        ctx.extras["consumer"] = consumer
        components.append(consumer)
    return components
