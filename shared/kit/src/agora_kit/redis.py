"""The process Redis client: explicit bounded retry with backoff, health checks, timeouts."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

from agora_kit.settings import ServiceSettings

#: Errors worth retrying on a fresh connection; anything else is a real answer.
RETRY_ON = (ConnectionError, TimeoutError, BusyLoadingError)


def create_redis(settings: ServiceSettings, *, max_connections: int = 50) -> Redis:
    """Create the process client (redis-py PITFALLS: explicit ``Retry``, health checks)."""
    return Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), settings.redis_retries, RETRY_ON),
        retry_on_error=list(RETRY_ON),
        health_check_interval=settings.redis_health_check_interval_s,
        max_connections=max_connections,
        client_name=settings.service_name,
    )
