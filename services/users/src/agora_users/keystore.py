"""The running service's key set, reloaded when ``agora keys rotate`` changes it on disk."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from agora_users.config import UsersSettings
from agora_users.keys import (
    MANIFEST,
    KeySet,
    KeySetError,
    ensure_folder,
    load_folder,
    parse_manifest,
)

logger = logging.getLogger("agora.users.keys")


def key_lifetime(settings: UsersSettings) -> timedelta:
    """How long a retired key must still verify: the longest-lived token it may have signed."""
    longest = max(
        settings.access_token_ttl_s,
        settings.verification_token_ttl_s,
        settings.reset_token_ttl_s,
    )
    return timedelta(seconds=longest + settings.jwt_leeway_s)


class KeyStore:
    """Holds the current key set; ``reload_if_changed`` picks up a rotated one."""

    def __init__(self, keyset: KeySet, *, folder: Path | None = None) -> None:
        self._keyset = keyset
        self._folder = folder
        self._stamp = self._manifest_stamp()

    @classmethod
    def from_settings(cls, settings: UsersSettings) -> KeyStore:
        """Load the key set the settings name; in development, create one when missing."""
        if settings.signing_keys is not None:
            try:
                document = json.loads(settings.signing_keys.get_secret_value())
            except ValueError as exc:
                raise KeySetError(f"USERS_SIGNING_KEYS is not JSON: {exc}") from exc
            return cls(parse_manifest(document, folder=None))
        folder = settings.key_folder
        assert folder is not None
        if settings.is_development:
            ensure_folder(folder, settings.key_algorithm)
        return cls(load_folder(folder), folder=folder)

    @property
    def keyset(self) -> KeySet:
        """The current key set."""
        return self._keyset

    def jwks(self) -> dict[str, Any]:
        """Return the public JWKS of the current key set."""
        return self._keyset.jwks()

    def _manifest_stamp(self) -> tuple[int, int, int] | None:
        if self._folder is None:
            return None
        try:
            st = os.stat(self._folder / MANIFEST)
        except OSError:
            return None
        # The manifest is replaced atomically: a new inode (or mtime) means a new key set.
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def reload_if_changed(self) -> bool:
        """Reload the key set when its manifest changed on disk; return True if it did."""
        if self._folder is None:
            return False
        stamp = self._manifest_stamp()
        if stamp is None or stamp == self._stamp:
            return False
        try:
            keyset = load_folder(self._folder)
        except KeySetError as exc:
            # Keep signing with the keys we have rather than fail every login.
            logger.error("key set reload failed, keeping the current keys: %s", exc)
            return False
        previous = self._keyset.active.kid
        self._keyset, self._stamp = keyset, stamp
        if keyset.active.kid != previous:
            logger.info("signing key rotated", extra={"kid": keyset.active.kid})
        return True


class KeyReloader:
    """Component: looks for a rotated key set every ``interval_s`` seconds."""

    def __init__(self, store: KeyStore, *, interval_s: float, stop_timeout_s: float) -> None:
        self.name = "key-reloader"
        self._store = store
        self._interval = interval_s
        self._stop_timeout = stop_timeout_s
        self._task: asyncio.Task[None] | None = None
        self._beat = time.monotonic()

    async def start(self) -> None:
        """Spawn the polling task."""
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Cancel the polling task and await it."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=self._stop_timeout)

    def is_alive(self) -> bool:
        """False when the polling task died or stopped beating."""
        task = self._task
        if task is None:
            return True
        return not task.done() and time.monotonic() - self._beat < self._interval * 10 + 30

    async def _run(self) -> None:
        while True:
            self._beat = time.monotonic()
            try:
                await asyncio.to_thread(self._store.reload_if_changed)
            except Exception:
                logger.exception("key set reload crashed")
            await asyncio.sleep(self._interval)
