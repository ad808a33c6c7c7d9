"""The kit's fixed-window counter against a real Redis: window, reserve/refund, no subject kept."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from agora_kit.errors import TooManyRequests
from agora_kit.redis import create_redis
from agora_kit.settings import ServiceSettings
from agora_kit.throttle import FixedWindow, refund, reserve


@pytest.mark.asyncio
async def test_a_window_counts_refuses_and_resets(redis_url: str) -> None:
    redis = create_redis(ServiceSettings(redis_url=redis_url))
    try:
        window = FixedWindow(redis, prefix=f"t:{uuid.uuid4().hex}:", limit=2, window_s=30)
        assert await window.retry_after("ada") is None
        assert [await window.allow("ada") for _ in range(3)] == [True, True, False]
        wait = await window.retry_after("ada")
        assert wait is not None
        assert 0 < wait <= 30
        with pytest.raises(TooManyRequests) as refused:
            await window.check("ada", "slow down")
        assert refused.value.headers == {"Retry-After": str(wait)}
        await window.check("bob", "slow down")  # another subject has its own window
        assert "ada" not in window.key("ada")
        await window.reset("ada")
        assert await window.retry_after("ada") is None
    finally:
        await redis.aclose()


@pytest.mark.asyncio
async def test_reserve_is_atomic_under_parallel_callers_and_refund_gives_back(
    redis_url: str,
) -> None:
    redis = create_redis(ServiceSettings(redis_url=redis_url))
    try:
        prefix = f"t:{uuid.uuid4().hex}:"
        narrow = FixedWindow(redis, prefix=f"{prefix}n:", limit=3, window_s=30)
        wide = FixedWindow(redis, prefix=f"{prefix}w:", limit=100, window_s=30)
        slots = [(narrow, "ada"), (wide, "client")]
        waits = await asyncio.gather(*(reserve(redis, slots) for _ in range(20)))
        assert waits.count(None) == 3  # never more than the limit, whatever the parallelism
        # A refused reservation took no slot in the wider counter either.
        assert await redis.get(wide.key("client")) in (b"3", "3")
        await refund(redis, slots)
        assert await reserve(redis, slots) is None
    finally:
        await redis.aclose()
