"""argon2id password hashing, run in worker threads so the event loop never waits on it."""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from agora_users.config import UsersSettings


class Passwords:
    """Hash and verify passwords with argon2id; bounded concurrency caps memory use."""

    def __init__(
        self,
        *,
        memory_kib: int,
        time_cost: int,
        parallelism: int,
        max_concurrency: int = 4,
    ) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        self._slots = asyncio.Semaphore(max_concurrency)
        # Made up front, so even the first unknown-address login costs one verification only.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    @classmethod
    def from_settings(cls, settings: UsersSettings) -> Passwords:
        """Build the hasher the settings describe."""
        return cls(
            memory_kib=settings.argon2_memory_kib,
            time_cost=settings.argon2_time_cost,
            parallelism=settings.argon2_parallelism,
            max_concurrency=settings.argon2_max_concurrency,
        )

    async def hash(self, password: str) -> str:
        """Return the argon2id hash of ``password`` (PHC string with its parameters)."""
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, hashed: str, password: str) -> bool:
        """Whether ``password`` matches ``hashed``; a malformed hash never matches."""
        async with self._slots:
            return await asyncio.to_thread(self._verify, hashed, password)

    def _verify(self, hashed: str, password: str) -> bool:
        try:
            return self._hasher.verify(hashed, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, hashed: str) -> bool:
        """Whether ``hashed`` was made with other parameters than the current ones."""
        try:
            return self._hasher.check_needs_rehash(hashed)
        except InvalidHashError:
            return True

    async def burn(self, password: str) -> None:
        """Verify against a dummy hash: an unknown account costs as much time as a known one."""
        await self.verify(self._dummy_hash, password)
