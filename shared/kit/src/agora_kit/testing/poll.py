"""Poll with a deadline, never a bare sleep: ``eventually`` and its blocking twin.

No pytest import: the chaos harness and ``agora demo`` use these outside a test run too.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

#: How long a condition may take unless the caller says otherwise.
DEFAULT_TIMEOUT_S = 30.0


def _timed_out(what: str, timeout_s: float, last: object) -> AssertionError:
    return AssertionError(f"{what} not met within {timeout_s:g}s (last value: {last!r})")


@overload
async def eventually(
    probe: Callable[[], Awaitable[T]],
    *,
    timeout_s: float = ...,
    interval_s: float = ...,
    what: str = ...,
) -> T: ...


@overload
async def eventually(
    probe: Callable[[], T],
    *,
    timeout_s: float = ...,
    interval_s: float = ...,
    what: str = ...,
) -> T: ...


async def eventually(
    probe: Callable[[], Any],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    interval_s: float = 0.05,
    what: str = "condition",
) -> Any:
    """Call ``probe()`` (awaiting it if async) until it is truthy; return that value.

    Raises ``AssertionError`` naming ``what`` and the last value once ``timeout_s`` has passed.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        value = await result if inspect.isawaitable(result) else result
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout_s, value)
        await asyncio.sleep(interval_s)


def eventually_sync(
    probe: Callable[[], T],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    interval_s: float = 0.25,
    what: str = "condition",
) -> T:
    """The blocking ``eventually``, for synchronous tests and tools (no event loop needed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout_s, value)
        time.sleep(interval_s)
