"""The users service's runtime: built once in the lifespan from the kit's clients."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agora_contract.topics import NOTIFIER_COMMANDS, USERS_EVENTS
from agora_kit.auth import JwksFetcher
from agora_kit.kafka import create_producer
from agora_kit.lifecycle import Component
from agora_kit.outbox.relay import OutboxRelay
from agora_kit.outbox.relay_config import RelayConfig
from agora_kit.runtime import Platform
from agora_kit.topics import TopicBootstrap

from agora_users.config import UsersSettings
from agora_users.keystore import KeyReloader, KeyStore
from agora_users.models import OUTBOX
from agora_users.passwords import Passwords
from agora_users.recovery import ResetLimits
from agora_users.security import LoginGuard, Revoker
from agora_users.tokens import TokenSigner


@dataclass(frozen=True, slots=True)
class UsersRuntime:
    """The users service's own collaborators and its background components in start order."""

    settings: UsersSettings
    keys: KeyStore
    signer: TokenSigner
    passwords: Passwords
    revoker: Revoker
    login_guard: LoginGuard
    reset_limits: ResetLimits
    components: tuple[Component, ...]


def bootstrap(platform: Platform[UsersSettings]) -> UsersRuntime:
    """Build the runtime: signing keys and their reloader, throttles, topic bootstrap, relay."""
    settings, redis = platform.settings, platform.redis
    keys = KeyStore.from_settings(settings)
    relay = OutboxRelay(
        engine=platform.engine,
        outbox=OUTBOX,
        producer_factory=lambda: create_producer(settings, client_id="agora-users-relay"),
        registry=platform.registry,
        config=RelayConfig.from_settings(settings),
    )
    reloader = KeyReloader(
        keys,
        interval_s=settings.key_reload_interval_s,
        stop_timeout_s=settings.shutdown_timeout_s,
    )
    return UsersRuntime(
        settings=settings,
        keys=keys,
        signer=TokenSigner(keys, settings),
        passwords=Passwords.from_settings(settings),
        revoker=Revoker(redis, leeway_s=settings.jwt_leeway_s),
        login_guard=LoginGuard(redis, settings),
        reset_limits=ResetLimits(redis, settings),
        components=(reloader, TopicBootstrap(settings, (USERS_EVENTS, NOTIFIER_COMMANDS)), relay),
    )


def local_jwks(runtime: UsersRuntime) -> JwksFetcher:
    """Verify the service's own tokens against its key store, not over HTTP to itself."""

    async def fetch() -> Mapping[str, Any]:
        # An unknown kid may mean another worker rotated a moment ago: look at the disk now.
        await asyncio.to_thread(runtime.keys.reload_if_changed)
        return runtime.keys.jwks()

    return fetch
