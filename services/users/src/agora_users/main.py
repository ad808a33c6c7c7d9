"""The users service app: ``create_app(settings)``; the lifespan builds everything it needs."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from agora_contract.topics import NOTIFIER_COMMANDS, USERS_EVENTS
from agora_kit.app import API_PREFIX, ServiceContext, create_service_app
from agora_kit.auth import JwksFetcher
from agora_kit.kafka import create_producer
from agora_kit.lifecycle import Component
from agora_kit.relay import OutboxRelay, RelayConfig
from agora_kit.topics import TopicBootstrap
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from agora_users.auth_router import router as auth_router
from agora_users.config import UsersSettings
from agora_users.deps import RUNTIME_KEY, UsersRuntime, runtime_of
from agora_users.exceptions import install_oauth_errors
from agora_users.keystore import KeyReloader, KeyStore
from agora_users.models import OUTBOX
from agora_users.pages import PATHS as PAGE_PATHS
from agora_users.pages import router as pages_router
from agora_users.router import router as users_router

DESCRIPTION = (
    "Accounts, email verification, OAuth2 password login with short-lived access tokens and "
    "rotating refresh tokens, signing keys (JWKS), password reset. Changes are published to "
    "`users.events` through a transactional outbox."
)
TAGS = [
    {"name": "users", "description": "Accounts and profiles."},
    {"name": "auth", "description": "Tokens, logout, email verification, password reset."},
    {"name": "keys", "description": "The public signing keys (JWKS)."},
]


def _components(ctx: ServiceContext) -> Sequence[Component]:
    settings = ctx.settings
    assert isinstance(settings, UsersSettings)
    keys = KeyStore.from_settings(settings)
    ctx.extras[RUNTIME_KEY] = UsersRuntime.build(settings, keys, ctx.redis)
    relay = OutboxRelay(
        engine=ctx.engine,
        outbox=OUTBOX,
        producer_factory=lambda: create_producer(settings, client_id="agora-users-relay"),
        registry=ctx.registry,
        config=RelayConfig.from_settings(settings),
    )
    reloader = KeyReloader(
        keys,
        interval_s=settings.key_reload_interval_s,
        stop_timeout_s=settings.shutdown_timeout_s,
    )
    return [reloader, TopicBootstrap(settings, (USERS_EVENTS, NOTIFIER_COMMANDS)), relay]


def _local_jwks(ctx: ServiceContext) -> JwksFetcher:
    """Verify the service's own tokens against its key store, not over HTTP to itself."""

    async def fetch() -> Mapping[str, Any]:
        keys = runtime_of(ctx).keys
        # An unknown kid may mean another worker rotated a moment ago: look at the disk now.
        await asyncio.to_thread(keys.reload_if_changed)
        return keys.jwks()

    return fetch


wellknown = APIRouter(tags=["keys"])


class JwkSetResponse(JSONResponse):
    """A JWK Set, under its registered media type (so the OpenAPI document names it)."""

    media_type = "application/jwk-set+json"


@wellknown.get("/.well-known/jwks.json", response_class=JwkSetResponse)
async def jwks(request: Request) -> JwkSetResponse:
    """Return the public keys that verify Agora's access tokens (RFC 7517)."""
    keys = runtime_of(request.app.state.ctx).keys
    return JwkSetResponse(
        keys.jwks(),
        # Short: verifiers refetch on an unknown kid anyway, and a rotation must show soon.
        headers={"Cache-Control": "public, max-age=60"},
    )


def create_app(settings: UsersSettings | None = None) -> FastAPI:
    """Build the users service app; nothing connects until the lifespan starts."""
    settings = settings or UsersSettings()
    app = create_service_app(
        settings,
        title="Agora users",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        routers=[users_router, auth_router],
        build_components=_components,
        jwks_fetcher=_local_jwks,
        # The pages behind the mailed links take tokens: never stored for replay, like /auth.
        idempotency_exclude=[f"{API_PREFIX}/auth", *PAGE_PATHS],
    )
    app.include_router(wellknown)
    app.include_router(pages_router)
    install_oauth_errors(app)
    return app
