"""Access-token revocation and login throttling, both in Redis."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from agora_kit.auth import REVOKED_PREFIX
from agora_kit.errors import TooManyRequests
from agora_kit.throttle import refund, reserve
from redis.asyncio import Redis
from redis.exceptions import RedisError

from agora_users.config import UsersSettings
from agora_users.throttle import Throttle, client_subject

logger = logging.getLogger("agora.users.security")


@dataclass(frozen=True, slots=True)
class Revocation:
    """An access token to put on the revocation list until it expires."""

    jti: str
    expires_at: datetime


class Revoker:
    """Writes ``agora:revoked:<jti>`` (docs/interfaces.md, Tokens), which every service checks."""

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
    """Throttles password checks so that guessing is slow and nobody else can lock you out.

    Three fixed-window counters of failures, each refusing with 429 and ``Retry-After``:
    per (account, client address), small; per client address, across accounts; per account,
    larger, for guesses spread over many addresses. A client address the owner signed in
    from lately skips the per-account counter, so a distributed attack cannot lock out the
    owner's usual devices. Slots are reserved atomically before the hash runs.
    """

    def __init__(self, redis: Redis, settings: UsersSettings) -> None:
        window = settings.login_failure_window_s
        self._redis = redis
        self.by_email_client = Throttle(
            redis,
            name="login-email-client",
            limit=settings.login_max_failures_per_email_client,
            window_s=window,
        )
        self.by_email = Throttle(
            redis, name="login-email", limit=settings.login_max_failures_per_email, window_s=window
        )
        self.by_client = Throttle(
            redis,
            name="login-client",
            limit=settings.login_max_failures_per_client,
            window_s=window,
        )
        self._known = Throttle(
            redis, name="login-known", limit=1, window_s=settings.login_known_client_days * 86400
        )

    async def attempt(self, *, email: str, client: str | None) -> LoginAttempt:
        """Reserve a failure in every counter before the password check; 429 when one is full."""
        who = client_subject(client)
        pair = f"{email}\n{who}"
        slots = [(self.by_email_client, pair)]
        if client is not None:
            slots.append((self.by_client, who))
        if not await self._redis.exists(self._known.key(pair)):
            slots.append((self.by_email, email))
        wait = await reserve(self._redis, slots)
        if wait is not None:
            raise TooManyRequests(
                "Too many failed sign-in attempts; try again later.", retry_after=wait
            )
        return LoginAttempt(self, pair=pair, slots=slots)

    async def forget(self, *, email: str, client: str | None) -> None:
        """Clear the account's failures if Redis answers (after a committed password reset)."""
        try:
            await self.by_email.reset(email)
            await self.by_email_client.reset(f"{email}\n{client_subject(client)}")
        except (RedisError, OSError) as exc:
            logger.warning("could not clear login failures: %s: %s", type(exc).__name__, exc)

    async def _succeeded(self, pair: str, slots: list[tuple[Throttle, str]]) -> None:
        # The right password: this pair's failures are forgiven, the other counters get their
        # slot back, and the address is remembered as the owner's.
        await self.by_email_client.reset(pair)
        await refund(self._redis, [s for s in slots if s[0] is not self.by_email_client])
        await self._redis.set(self._known.key(pair), b"1", ex=self._known.window_s)


class LoginAttempt:
    """The slots one password check holds: kept on failure, given back otherwise."""

    def __init__(self, guard: LoginGuard, *, pair: str, slots: list[tuple[Throttle, str]]) -> None:
        self._guard = guard
        self._pair = pair
        self._slots = slots

    async def succeeded(self) -> None:
        """The password was right: give the slots back and remember the client."""
        await self._guard._succeeded(self._pair, self._slots)

    async def abandon(self) -> None:
        """No verdict was reached (an error): give the slots back, best effort."""
        try:
            await refund(self._guard._redis, self._slots)
        except (RedisError, OSError) as exc:
            logger.warning("could not refund a login attempt: %s: %s", type(exc).__name__, exc)
