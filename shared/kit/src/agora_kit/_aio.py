"""Small asyncio helpers the kit shares."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")

#: Work that outlives a cancelled caller; the loop itself keeps only weak references to tasks.
_DETACHED: set[asyncio.Future[Any]] = set()


async def shielded(awaitable: Awaitable[T]) -> T:
    """Run ``awaitable`` to completion even if the caller is cancelled meanwhile.

    The caller still sees the result (or the cancellation); the work itself is never cut in
    half: a rollback, a connection's invalidation, a Redis claim or release.
    """
    task = asyncio.ensure_future(awaitable)
    _DETACHED.add(task)
    task.add_done_callback(_DETACHED.discard)
    return await asyncio.shield(task)
