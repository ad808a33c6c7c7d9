"""The service skeleton's types: the kit's shared clients, a service's runtime, the context.

A service's ``bootstrap(platform)`` receives the clients the kit built (:class:`Platform`) and
returns its own frozen runtime: the objects its routes and handlers use, plus its background
components in start order. The app factory then builds the :class:`ServiceContext`, typed over
the service's settings and runtime, and keeps it in ``app.state.ctx``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeAlias, TypeVar

import httpx
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agora_kit.auth import JwtVerifier
from agora_kit.lifecycle import Component
from agora_kit.metrics import HttpMetrics
from agora_kit.settings import ServiceSettings

__all__ = [
    "AnyContext",
    "Bootstrap",
    "NoRuntime",
    "Platform",
    "RuntimeT",
    "ServiceContext",
    "ServiceRuntime",
    "SettingsT",
]


class ServiceRuntime(Protocol):
    """What a service's bootstrap builds: its own objects and its background components."""

    @property
    def components(self) -> Sequence[Component]:
        """The background components in start order (they stop in reverse)."""
        ...


SettingsT = TypeVar("SettingsT", bound=ServiceSettings)
RuntimeT = TypeVar("RuntimeT", bound=ServiceRuntime)


@dataclass(frozen=True, slots=True)
class NoRuntime:
    """The runtime of an app without a bootstrap (kit tests, bare apps): nothing in it."""

    components: tuple[Component, ...] = ()


@dataclass(frozen=True)
class Platform(Generic[SettingsT]):
    """The clients the kit builds for every service, before the service's own runtime."""

    settings: SettingsT
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    redis: Redis
    http: httpx.AsyncClient
    registry: CollectorRegistry


@dataclass(frozen=True)
class ServiceContext(Platform[SettingsT], Generic[SettingsT, RuntimeT]):
    """Everything a running service shares; built in the lifespan, kept in ``app.state.ctx``."""

    verifier: JwtVerifier
    http_metrics: HttpMetrics
    runtime: RuntimeT
    #: The runtime's components that have started, in start order (``/health/live`` reads it).
    components: list[Component] = field(default_factory=list)


#: A context whose settings and runtime the caller does not know (the kit's own code).
AnyContext: TypeAlias = ServiceContext[Any, Any]

#: A service's bootstrap: the kit's clients in, the service's frozen runtime out.
Bootstrap: TypeAlias = Callable[[Platform[SettingsT]], RuntimeT]
