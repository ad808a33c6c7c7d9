"""Topic bootstrap: a component that creates a service's missing topics in the background."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from agora_kit.consumer.retry import Backoff
from agora_kit.kafka import ensure_topics
from agora_kit.settings import ServiceSettings

logger = logging.getLogger("agora.topics")

#: Between rounds of ``ensure_topics`` (each round already retries a few times by itself).
TOPICS_BACKOFF = Backoff(base_s=1.0, max_s=30.0)


class TopicBootstrap:
    """Component: ``ensure_topics`` until it succeeds once (bounded backoff), then idle.

    Never blocks start-up: with the broker down the API still takes writes (the outbox keeps
    them), and the relay publishes once the topics exist.
    """

    name = "topic-bootstrap"

    def __init__(
        self,
        settings: ServiceSettings,
        topics: Iterable[str],
        *,
        backoff: Backoff = TOPICS_BACKOFF,
    ) -> None:
        self._settings = settings
        self._topics = sorted(set(topics))
        self._backoff = backoff
        self._task: asyncio.Task[None] | None = None
        #: Set once every topic exists.
        self.done = asyncio.Event()

    async def start(self) -> None:
        """Spawn the task that creates the missing topics, and return at once."""
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Cancel the task if it is still trying, and await it with a timeout."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=self._settings.shutdown_timeout_s)

    def is_alive(self) -> bool:
        """Return False only if the task crashed (it rides out broker errors by retrying)."""
        task = self._task
        return task is None or not task.done() or task.cancelled() or task.exception() is None

    async def _run(self) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await ensure_topics(self._settings, self._topics)
            except Exception as exc:  # the broker is away or refuses: retry, never crash the app
                delay = self._backoff.delay(attempt)
                logger.warning(
                    "topics not ensured yet, retrying",
                    extra={
                        "topics": self._topics,
                        "attempt": attempt,
                        "error": repr(exc),
                        "retry_in_s": round(delay, 2),
                    },
                )
                await asyncio.sleep(delay)
                continue
            self.done.set()
            return
