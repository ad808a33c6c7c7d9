"""The per-recipient throttle: a fixed-window counter in Redis (Postgres stays the truth)."""

from __future__ import annotations

import logging
from typing import Protocol

from agora_kit.throttle import FixedWindow
from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger("agora.notifier.throttle")

KEY_PREFIX = "agora:notifier:throttle:"


class Throttle(Protocol):
    """Decides whether one more email may go to a recipient now."""

    async def allow(self, recipient: str) -> bool:
        """Count one email for ``recipient``; False when it is over its rate."""
        ...


class RedisThrottle:
    """At most ``limit`` emails per recipient per ``window_s``; fails open if Redis is down."""

    def __init__(
        self, redis: Redis, *, limit: int, window_s: int, prefix: str = KEY_PREFIX
    ) -> None:
        self.window = FixedWindow(redis, prefix=prefix, limit=limit, window_s=window_s)

    def key(self, recipient: str) -> str:
        """The Redis key of a recipient (a digest: no address in Redis)."""
        return self.window.key(recipient)

    async def allow(self, recipient: str) -> bool:
        """Count one email for ``recipient``; False when it is over its rate."""
        try:
            return await self.window.allow(recipient)
        except (RedisError, OSError) as exc:
            # The throttle protects inboxes; mail must not stop because Redis did.
            logger.warning("throttle unavailable, allowing: %s", type(exc).__name__)
            return True
