"""Small background parts of the notifier: topic creation and the SMTP pool's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from agora_kit.kafka import ensure_topics
from agora_kit.settings import ServiceSettings

from agora_notifier.smtp import EmailSender

logger = logging.getLogger("agora.notifier")

#: Between attempts to create missing topics while the broker is away.
TOPICS_RETRY_S = 15.0


class TopicsEnsurer:
    """Creates the topics the notifier reads and writes, in the background, until it succeeds.

    In the background: a broker that is down must not keep the HTTP API from starting.
    """

    def __init__(self, settings: ServiceSettings, topics: Sequence[str]) -> None:
        self.name = "topics"
        self._settings = settings
        self._topics = list(topics)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Spawn the creation task."""
        self._task = asyncio.create_task(self._run(), name="notifier:topics")

    async def _run(self) -> None:
        while True:
            try:
                await ensure_topics(self._settings, self._topics)
                return
            except Exception as exc:  # the broker is away: retry, never crash the app
                logger.warning("creating topics failed, retrying: %s", exc)
            await asyncio.sleep(TOPICS_RETRY_S)

    async def stop(self) -> None:
        """Cancel the task if it still runs."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({task}, timeout=5)

    def is_alive(self) -> bool:
        """Never wedged: it only retries."""
        return True


class SenderComponent:
    """Closes the SMTP connection pool on shutdown (after the consumer stopped)."""

    def __init__(self, sender: EmailSender) -> None:
        self.name = "smtp"
        self._sender = sender

    async def start(self) -> None:
        """Nothing to start: connections open on the first email."""

    async def stop(self) -> None:
        """Quit the pooled connections."""
        await self._sender.close()

    def is_alive(self) -> bool:
        """The pool cannot wedge; a failing server shows as retries."""
        return True
