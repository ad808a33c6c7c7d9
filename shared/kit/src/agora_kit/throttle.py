"""Fixed-window counters in Redis: the one throttle every service uses.

A window starts with its subject's first event and is not extended by later ones. Keys hold a
digest of the subject (an address, a client), never the subject itself, so Redis keeps no
personal data. Redis errors propagate: each caller decides whether its limit fails closed
(the kit answers 503 with Retry-After) or open, and says why.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from redis.asyncio import Redis

from agora_kit.errors import TooManyRequests

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

# Take one slot in every counter, or in none: when any counter is at its limit, refuse with
# the longest wait. Atomic, so parallel requests cannot all pass a check made before any of
# them was counted. ARGV holds a limit and a window per key.
_RESERVE = """
local wait = 0
for i, key in ipairs(KEYS) do
  local n = tonumber(redis.call('GET', key) or '0')
  if n >= tonumber(ARGV[2 * i - 1]) then
    local ttl = redis.call('TTL', key)
    if ttl < 1 then
      redis.call('EXPIRE', key, ARGV[2 * i])
      ttl = tonumber(ARGV[2 * i])
    end
    if ttl > wait then wait = ttl end
  end
end
if wait > 0 then return wait end
for i, key in ipairs(KEYS) do
  redis.call('INCR', key)
  if redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, ARGV[2 * i]) end
end
return 0
"""

# Give slots back (the attempt succeeded or never reached a verdict); never below zero.
_REFUND = """
for _, key in ipairs(KEYS) do
  if redis.call('DECR', key) <= 0 then redis.call('DEL', key) end
end
return 0
"""


class FixedWindow:
    """At most ``limit`` events per subject per ``window_s``, counted under ``prefix``."""

    def __init__(self, redis: Redis, *, prefix: str, limit: int, window_s: int) -> None:
        self._redis = redis
        self.prefix = prefix
        self.limit = limit
        self.window_s = window_s

    def key(self, subject: str) -> str:
        """Return the Redis key of ``subject`` (a digest)."""
        digest = hashlib.sha256(subject.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return f"{self.prefix}{digest}"

    async def hit(self, subject: str) -> int:
        """Count one event for ``subject``; return the count in the current window."""
        result = await self._redis.eval(_HIT, 1, self.key(subject), str(self.window_s))
        return int(result[0])

    async def allow(self, subject: str) -> bool:
        """Count one event for ``subject``; False when that one is over the limit."""
        return await self.hit(subject) <= self.limit

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

    async def reset(self, subject: str) -> None:
        """Forget ``subject``'s events."""
        await self._redis.delete(self.key(subject))


async def reserve(redis: Redis, slots: Sequence[tuple[FixedWindow, str]]) -> int | None:
    """Count one event for each (window, subject) at once; return the wait if one is full.

    Nothing is counted when a counter is full, so a refused attempt costs no slot.
    """
    keys = [window.key(subject) for window, subject in slots]
    limits = [str(v) for window, _ in slots for v in (window.limit, window.window_s)]
    wait = int(await redis.eval(_RESERVE, len(keys), *keys, *limits))
    return wait if wait > 0 else None


async def refund(redis: Redis, slots: Sequence[tuple[FixedWindow, str]]) -> None:
    """Give back the slots ``reserve`` took."""
    if slots:
        keys = [window.key(subject) for window, subject in slots]
        await redis.eval(_REFUND, len(keys), *keys)
