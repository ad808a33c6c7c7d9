"""Creates the service's topics at start, in the background: a broker outage never blocks
the write API (the outbox holds events until the broker is back)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence

from agora_kit.kafka import ensure_topics
from agora_kit.settings import ServiceSettings

logger = logging.getLogger("agora.users.topics")

_MAX_BACKOFF_S = 30.0


class TopicBootstrap:
    """Component: ``ensure_topics`` until it succeeds once (bounded backoff), then idle."""

    def __init__(self, settings: ServiceSettings, topics: Sequence[str]) -> None:
        self.name = "topic-bootstrap"
        self._settings = settings
        self._topics = list(topics)
        self._task: asyncio.Task[None] | None = None
        self.done = asyncio.Event()

    async def start(self) -> None:
        """Spawn the task that creates the missing topics."""
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Cancel the task (if still trying) and await it."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=self._settings.shutdown_timeout_s)

    def is_alive(self) -> bool:
        """False only if the task crashed (it retries broker errors by itself)."""
        task = self._task
        return task is None or not task.done() or task.cancelled() or task.exception() is None

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                await ensure_topics(self._settings, self._topics)
            except Exception as exc:
                logger.warning(
                    "topics not ensured yet (%s: %s); retrying in %.1fs",
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
                delay = min(delay * 2, _MAX_BACKOFF_S)
                continue
            self.done.set()
            return
