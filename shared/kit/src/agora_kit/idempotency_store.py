"""Where Idempotency-Key claims and completed responses live: Redis, with atomic scripts."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from agora_kit._aio import shielded

logger = logging.getLogger("agora.idempotency")


_CLAIM = """
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return ARGV[1]
"""


_COMPLETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
return false
"""


_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class Stored:
    """A completed response kept for replay."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class IdempotencyStore:
    """Claim, complete and release idempotency records in Redis."""

    def __init__(self, redis: Redis, *, ttl_s: int, lock_ttl_s: int) -> None:
        self._redis = redis
        self._ttl = ttl_s
        self._lock_ttl = lock_ttl_s

    async def claim(self, key: str, fingerprint: str) -> tuple[str, Any]:
        """Return ``("claimed", marker)`` or what the key already holds."""
        marker = json.dumps({"state": "processing", "fp": fingerprint, "id": uuid.uuid4().hex})
        raw = await self._redis.eval(_CLAIM, 1, key, marker, self._lock_ttl)
        current = raw.decode() if isinstance(raw, bytes) else str(raw)
        # A retried script whose first reply was lost returns our own marker: still ours.
        if current == marker:
            return "claimed", marker
        record = json.loads(current)
        if record.get("fp") != fingerprint:
            return "mismatch", None
        if record.get("state") == "done":
            headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in record["headers"]]
            return "replay", Stored(record["status"], headers, base64.b64decode(record["body"]))
        return "processing", None

    async def complete(self, key: str, marker: str, fingerprint: str, stored: Stored) -> None:
        """Replace our marker with the response (no-op if the claim expired meanwhile)."""
        record = json.dumps(
            {
                "state": "done",
                "fp": fingerprint,
                "status": stored.status,
                "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in stored.headers],
                "body": base64.b64encode(stored.body).decode(),
            }
        )
        await self._redis.eval(_COMPLETE, 1, key, marker, record, self._ttl)

    async def extend(self, key: str, marker: str) -> None:
        """Keep our "processing" marker alive for another lock TTL."""
        await self._redis.eval(_EXTEND, 1, key, marker, self._lock_ttl)

    async def keep_alive(self, key: str, marker: str) -> None:
        """Extend the marker every third of its TTL until cancelled (the request finished)."""
        while True:
            await asyncio.sleep(max(self._lock_ttl / 3, 0.2))
            try:
                await shielded(self.extend(key, marker))
            except (RedisError, OSError) as exc:
                logger.warning("could not extend idempotency claim: %s", exc)

    async def release(self, key: str, marker: str) -> None:
        """Drop our marker so a retry can run."""
        await self._redis.eval(_RELEASE, 1, key, marker)
