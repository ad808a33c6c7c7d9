"""The users service's throttles: failed logins and password-reset requests.

The counters are the kit's fixed windows (:mod:`agora_kit.throttle`); they fail closed: with
Redis down, login and reset answer 503 with Retry-After rather than go uncounted.
"""

from __future__ import annotations

import ipaddress

from agora_kit.throttle import FixedWindow
from redis.asyncio import Redis

PREFIX = "agora:users:throttle:"


def client_subject(client: str | None) -> str:
    """Return what a client is counted as: its address, or its /64 for IPv6."""
    if client is None:
        return "unknown"
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        # One host usually holds a whole /64: counting single addresses would be no limit.
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class Throttle(FixedWindow):
    """One named counter of the users service (``check`` refuses with 429 at the limit)."""

    def __init__(self, redis: Redis, *, name: str, limit: int, window_s: int) -> None:
        super().__init__(redis, prefix=f"{PREFIX}{name}:", limit=limit, window_s=window_s)
