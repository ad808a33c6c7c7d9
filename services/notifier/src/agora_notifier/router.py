"""The notifier's HTTP API: the caller's deliveries and preferences, admin dead letters."""

from __future__ import annotations

from typing import Annotated

from agora_kit.consumer.routes import dead_letter_router
from agora_kit.deps import CurrentUserDep, SessionDep, require_admin
from agora_kit.params import SkipDep
from fastapi import APIRouter, Query

from agora_notifier import service
from agora_notifier.deps import UowDep, get_dead_letters
from agora_notifier.models import DeliveryStatus
from agora_notifier.schemas import DeliveryPage, Preferences, PreferencesUpdate

MAX_PAGE = 100


def build_router(*, group: str) -> APIRouter:
    """Return the notifier's routes (mounted under ``/api/v1``)."""
    router = APIRouter(prefix="/notifications", tags=["notifications"])

    @router.get("", response_model=DeliveryPage)
    async def list_notifications(
        user: CurrentUserDep,
        session: SessionDep,
        skip: SkipDep,
        status: Annotated[DeliveryStatus | None, Query(description="Only this status.")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")] = 20,
    ) -> DeliveryPage:
        """List the emails sent to you, newest first, with their status."""
        return await service.list_deliveries(
            session=session, user_id=user.user_id, status=status, limit=limit, skip=skip
        )

    @router.get("/preferences", response_model=Preferences)
    async def get_preferences(user: CurrentUserDep, session: SessionDep) -> Preferences:
        """Show your mail preferences."""
        return await service.get_preferences(session=session, user_id=user.user_id)

    @router.put("/preferences", response_model=Preferences)
    async def put_preferences(
        user: CurrentUserDep, uow: UowDep, body: PreferencesUpdate
    ) -> Preferences:
        """Set your mail preferences (security mail always goes)."""
        return await service.set_preferences(
            uow=uow, user_id=user.user_id, item_mail=body.item_mail
        )

    router.include_router(
        dead_letter_router(store=get_dead_letters, admin=require_admin, group=group),
        prefix="/dead-letters",
    )
    return router
