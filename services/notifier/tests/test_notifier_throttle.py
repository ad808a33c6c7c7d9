"""The per-recipient throttle against a real Redis: a window, per recipient, failing open."""

from __future__ import annotations

import uuid

import pytest
from agora_deploy.launchers.process import free_port
from agora_kit.redis import create_redis
from agora_kit.settings import ServiceSettings
from agora_notifier.throttle import RedisThrottle


@pytest.mark.asyncio
async def test_throttle_counts_per_recipient_in_a_window(redis_url: str) -> None:
    redis = create_redis(ServiceSettings(redis_url=redis_url))
    try:
        throttle = RedisThrottle(redis, limit=2, window_s=30, prefix=f"t:{uuid.uuid4().hex}:")
        assert [await throttle.allow("a@x.test") for _ in range(3)] == [True, True, False]
        assert await throttle.allow("b@x.test") is True
        ttl = await redis.ttl(throttle.key("a@x.test"))
        assert 0 < ttl <= 30
        assert "a@x.test" not in throttle.key("a@x.test")
    finally:
        await redis.aclose()


@pytest.mark.asyncio
async def test_throttle_fails_open_when_redis_is_down() -> None:
    settings = ServiceSettings(
        redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout_s=0.5, redis_retries=0
    )
    redis = create_redis(settings)
    try:
        throttle = RedisThrottle(redis, limit=1, window_s=30)
        assert await throttle.allow("a@x.test") is True
    finally:
        await redis.aclose()
