"""Access-token revocation and login throttling, both in Redis."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from agora_kit.auth import REVOKED_PREFIX
from redis.asyncio import Redis
from redis.exceptions import RedisError

from agora_users.config import UsersSettings
from agora_users.throttle import Throttle

logger = logging.getLogger("agora.users.security")


@dataclass(frozen=True, slots=True)
class Revocation:
    """An access token to put on the revocation list until it expires."""

    jti: str
    expires_at: datetime


class Revoker:
    """Writes ``agora:revoked:<jti>`` (INTERFACES.md §4), which every service checks."""

    def __init__(self, redis: Redis, *, leeway_s: int) -> None:
        self._redis = redis
        self._leeway = leeway_s

    async def revoke(self, revocations: Iterable[Revocation]) -> None:
        """Revoke the tokens until their expiry (plus the verifiers' leeway)."""
        now = time.time()
        async with self._redis.pipeline(transaction=False) as pipe:
            count = 0
            for item in revocations:
                ttl = int(item.expires_at.timestamp() - now) + self._leeway + 1
                if ttl > 0:
                    pipe.set(f"{REVOKED_PREFIX}{item.jti}", b"1", ex=ttl)
                    count += 1
            if count:
                await pipe.execute()

    async def revoke_best_effort(self, revocations: Iterable[Revocation]) -> None:
        """Revoke, logging instead of failing: for a change that has already committed."""
        try:
            await self.revoke(list(revocations))
        except (RedisError, OSError) as exc:
            # The sessions are gone in the database; the access tokens die within their TTL.
            logger.warning("could not revoke access tokens: %s: %s", type(exc).__name__, exc)


class LoginGuard:
    """Throttles failed password checks per address and per client (429 with Retry-After)."""

    def __init__(self, redis: Redis, settings: UsersSettings) -> None:
        window = settings.login_failure_window_s
        self.by_email = Throttle(
            redis, name="login-email", limit=settings.login_max_failures_per_email, window_s=window
        )
        self.by_client = Throttle(
            redis,
            name="login-client",
            limit=settings.login_max_failures_per_client,
            window_s=window,
        )

    async def check(self, *, email: str, client: str | None) -> None:
        """Refuse (429) while the address or the client has too many recent failures."""
        detail = "Too many failed sign-in attempts; try again later."
        await self.by_email.check(email, detail)
        if client is not None:
            await self.by_client.check(client, detail)

    async def failed(self, *, email: str, client: str | None) -> None:
        """Count one failed password check."""
        await self.by_email.hit(email)
        if client is not None:
            await self.by_client.hit(client)

    async def succeeded(self, *, email: str) -> None:
        """Clear the address's failures after a correct password."""
        await self.by_email.reset(email)

    async def forget(self, *, email: str) -> None:
        """Clear the address's failures if Redis answers (after a committed password reset)."""
        try:
            await self.by_email.reset(email)
        except (RedisError, OSError) as exc:
            logger.warning("could not clear login failures: %s: %s", type(exc).__name__, exc)
