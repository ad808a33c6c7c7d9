"""Fixed-window counters in Redis: failed logins and password-reset requests.

Keys hold a hash of the address or client, never the address itself, so Redis keeps no
personal data.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence

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


def client_subject(client: str | None) -> str:
    """Return what a client is counted as: its address, or its /64 for IPv6."""
    if client is None:
        return "unknown"
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        # One host usually holds a whole /64: counting single addresses would be no limit.
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


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


async def reserve(redis: Redis, slots: Sequence[tuple[Throttle, str]]) -> int | None:
    """Count one event for each (throttle, subject) at once; return the wait if one is full.

    Nothing is counted when a counter is full, so a refused attempt costs no slot.
    """
    keys = [throttle.key(subject) for throttle, subject in slots]
    limits = [str(v) for throttle, _ in slots for v in (throttle.limit, throttle.window_s)]
    wait = int(await redis.eval(_RESERVE, len(keys), *keys, *limits))
    return wait if wait > 0 else None


async def refund(redis: Redis, slots: Sequence[tuple[Throttle, str]]) -> None:
    """Give back the slots ``reserve`` took."""
    if slots:
        keys = [throttle.key(subject) for throttle, subject in slots]
        await redis.eval(_REFUND, len(keys), *keys)
