"""Fixed-window counters in Redis: failed logins and password-reset requests.

Keys hold a hash of the address or client, never the address itself, so Redis keeps no
personal data.
"""

from __future__ import annotations

import hashlib

from agora_kit.errors import TooManyRequests
from redis.asyncio import Redis

PREFIX = "agora:users:throttle:"

# INCR and set the window on the first hit (or when a crash left the key without a TTL).
_HIT = """
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
"""


class Throttle:
    """Counts events per subject in a window; ``check`` refuses with 429 at the limit."""

    def __init__(self, redis: Redis, *, name: str, limit: int, window_s: int) -> None:
        self._redis = redis
        self._name = name
        self.limit = limit
        self.window_s = window_s

    def key(self, subject: str) -> str:
        """Return the Redis key of ``subject`` (hashed)."""
        digest = hashlib.sha256(subject.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return f"{PREFIX}{self._name}:{digest}"

    async def retry_after(self, subject: str) -> int | None:
        """Return seconds until ``subject`` may try again, or None when under the limit."""
        key = self.key(subject)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(key)
            pipe.ttl(key)
            count, ttl = await pipe.execute()
        if count is None or int(count) < self.limit:
            return None
        return max(1, int(ttl)) if int(ttl) > 0 else self.window_s

    async def check(self, subject: str, detail: str) -> None:
        """Raise 429 with ``Retry-After`` when ``subject`` reached the limit."""
        wait = await self.retry_after(subject)
        if wait is not None:
            raise TooManyRequests(detail, retry_after=wait)

    async def hit(self, subject: str) -> int:
        """Count one event for ``subject``; return the count in the current window."""
        result = await self._redis.eval(_HIT, 1, self.key(subject), str(self.window_s))
        return int(result[0])

    async def reset(self, subject: str) -> None:
        """Forget ``subject``'s events (a successful login clears its address's failures)."""
        await self._redis.delete(self.key(subject))
