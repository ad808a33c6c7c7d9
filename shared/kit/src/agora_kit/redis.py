"""The process Redis client: explicit bounded retry with backoff, health checks, timeouts."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError, ConnectionError

from agora_kit.settings import ServiceSettings

#: Errors worth retrying on a fresh connection; anything else is a real answer. A timeout is
#: not among them: a server that did not answer within ``REDIS_TIMEOUT_S`` (frozen, swapping)
#: will not answer the retry either, and each retry would add a full timeout to the request.
#: A stale pooled connection (Redis restarted) fails fast with ConnectionError instead.
RETRY_ON = (ConnectionError, BusyLoadingError)


def create_redis(settings: ServiceSettings, *, max_connections: int = 50) -> Redis:
    """Create the process client, with an explicit ``Retry`` and health checks."""
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
