"""The users service app: ``create_app(settings)``; the lifespan runs ``bootstrap``."""

from __future__ import annotations

from agora_kit.app import API_PREFIX, create_service_app
from fastapi import FastAPI

from agora_users.auth_router import router as auth_router
from agora_users.bootstrap import bootstrap, local_jwks
from agora_users.config import UsersSettings
from agora_users.exceptions import install_oauth_errors
from agora_users.pages import PATHS as PAGE_PATHS
from agora_users.pages import router as pages_router
from agora_users.router import router as users_router
from agora_users.wellknown import router as wellknown_router

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


def create_app(settings: UsersSettings | None = None) -> FastAPI:
    """Build the users service app; nothing connects until the lifespan starts."""
    settings = settings or UsersSettings()
    app = create_service_app(
        settings,
        title="Agora users",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        routers=[users_router, auth_router],
        bootstrap=bootstrap,
        jwks_fetcher=local_jwks,
        # The pages behind the mailed links take tokens: never stored for replay, like /auth.
        idempotency_exclude=[f"{API_PREFIX}/auth", *PAGE_PATHS],
    )
    app.include_router(wellknown_router)
    app.include_router(pages_router)
    install_oauth_errors(app)
    return app
