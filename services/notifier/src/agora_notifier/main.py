"""The notifier app: HTTP API, the consumer of users/items events and commands, the relay."""

from __future__ import annotations

from agora_kit.app import create_service_app
from fastapi import FastAPI

from agora_notifier.bootstrap import bootstrap
from agora_notifier.config import NotifierSettings
from agora_notifier.router import build_router


def create_app(settings: NotifierSettings | None = None) -> FastAPI:
    """Build the notifier app; nothing connects until its lifespan starts."""
    settings = settings or NotifierSettings()
    return create_service_app(
        settings,
        title="Agora notifier",
        description="Sends Agora's email from domain events and commands, effectively once.",
        routers=[build_router(group=settings.consumer_group)],
        bootstrap=bootstrap,
        openapi_tags=[
            {"name": "notifications", "description": "Your emails and mail preferences."},
            {"name": "dead-letters", "description": "Events the notifier gave up on (admin)."},
        ],
    )
