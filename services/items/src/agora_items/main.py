"""The items app factory: ``uvicorn --factory agora_items.main:create_app``."""

from __future__ import annotations

from agora_kit.app import create_service_app
from agora_kit.consumer.routes import dead_letter_router
from agora_kit.deps import require_admin
from fastapi import APIRouter, FastAPI

from agora_items.bootstrap import bootstrap
from agora_items.config import ItemsSettings
from agora_items.deps import get_dead_letter_store
from agora_items.router import router as items_router

DESCRIPTION = """
Items owned by users. Reads are public; writes need an access token from the users
service and are allowed to the item's owner only. Every write publishes one CloudEvent on
`items.events` (key = item id) through a transactional outbox. The service follows
`users.events`: a deleted user's items are deleted, each with its own `ItemDeleted`.
"""


def create_app(settings: ItemsSettings | None = None) -> FastAPI:
    """Build the items app; nothing connects until its lifespan starts."""
    settings = settings or ItemsSettings()
    dead_letters = dead_letter_router(
        store=get_dead_letter_store,
        admin=require_admin,
        group=settings.consumer_group,
        tags=("dead-letters",),
    )
    admin = APIRouter()
    admin.include_router(dead_letters, prefix="/items/dead-letters")
    return create_service_app(
        settings,
        title="Agora items",
        description=DESCRIPTION,
        # Dead letters first: `/items/{item_id}` would otherwise claim `/items/dead-letters`.
        routers=[admin, items_router],
        bootstrap=bootstrap,
        openapi_tags=[
            {"name": "items", "description": "Create, read, list, update and delete items."},
            {
                "name": "dead-letters",
                "description": "Admin: user events the projection gave up on.",
            },
        ],
    )
