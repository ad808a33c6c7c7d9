"""Background parts of the items service: topic bootstrap, outbox relay, users consumer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from agora_contract.topics import ITEMS_EVENTS
from agora_kit.app import ServiceContext
from agora_kit.kafka import create_producer, ensure_topics
from agora_kit.lifecycle import Component
from agora_kit.relay import OutboxRelay, RelayConfig
from agora_kit.retry import Backoff
from aiokafka.errors import KafkaError

from agora_items.config import ItemsSettings
from agora_items.consumer import build_consumer
from agora_items.models import outbox

logger = logging.getLogger("agora.items.components")


class TopicBootstrap:
    """Creates the service's topics in the background, retrying while the broker is away.

    Never blocks start-up: with the broker down the API still takes writes (the outbox keeps
    them), and the relay publishes once the topics exist.
    """

    name = "topic-bootstrap"

    def __init__(self, settings: ItemsSettings, topics: Sequence[str]) -> None:
        self._settings = settings
        self._topics = sorted(set(topics))
        self._task: asyncio.Task[None] | None = None
        self._backoff = Backoff(base_s=1.0, max_s=30.0)
        self.done = asyncio.Event()

    async def start(self) -> None:
        """Spawn the bootstrap task."""
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Cancel the task if it is still trying (bounded)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=self._settings.shutdown_timeout_s)

    def is_alive(self) -> bool:
        """Retrying is no wedge: always alive."""
        return True

    async def _run(self) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await ensure_topics(self._settings, self._topics)
            except (KafkaError, TimeoutError, OSError) as exc:
                delay = self._backoff.delay(attempt)
                logger.warning(
                    "could not ensure topics, retrying",
                    extra={"topics": self._topics, "error": repr(exc), "retry_in": delay},
                )
                await asyncio.sleep(delay)
                continue
            self.done.set()
            return


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
