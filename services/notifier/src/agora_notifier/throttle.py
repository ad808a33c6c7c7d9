"""The per-recipient throttle: a fixed-window counter in Redis (Postgres stays the truth)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger("agora.notifier.throttle")

KEY_PREFIX = "agora:notifier:throttle:"


class Throttle(Protocol):
    """Decides whether one more email may go to a recipient now."""

    async def allow(self, recipient: str) -> bool:
        """Count one email for ``recipient``; False when it is over its rate."""
        ...


@dataclass(frozen=True, slots=True)
class RedisThrottle:
    """At most ``limit`` emails per recipient per ``window_s``; fails open if Redis is down."""

    redis: Redis
    limit: int
    window_s: int
    prefix: str = KEY_PREFIX

    def key(self, recipient: str) -> str:
        """The Redis key of a recipient (a digest: no address in Redis)."""
        return self.prefix + hashlib.sha256(recipient.encode()).hexdigest()[:32]

    async def allow(self, recipient: str) -> bool:
        """Count one email for ``recipient``; False when it is over its rate."""
        key = self.key(recipient)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                # The window starts with its first email; later ones do not extend it
                # (SET NX EX, not EXPIRE NX: that needs Redis 7).
                pipe.set(key, 0, ex=self.window_s, nx=True)
                pipe.incr(key)
                _, count = await pipe.execute()
        except (RedisError, OSError) as exc:
            # The throttle protects inboxes; mail must not stop because Redis did.
            logger.warning("throttle unavailable, allowing: %s", type(exc).__name__)
            return True
        return int(count) <= self.limit
