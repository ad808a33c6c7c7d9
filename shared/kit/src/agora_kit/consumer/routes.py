"""Admin routes over a service's dead letters: list, show, replay, discard.

A service mounts them under its own prefix, e.g.
``app.include_router(dead_letter_router(store=get_store, admin=require_admin),
prefix="/api/v1/notifications/dead-letters")``.
"""

# No ``from __future__ import annotations``: FastAPI must see the ``Annotated`` dependency
# aliases built inside ``dead_letter_router`` as objects, not as strings it cannot resolve.

import base64
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Self

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict

from agora_kit.consumer.deadletter_table import DeadLetterStatus, ErrorKind
from agora_kit.consumer.deadletters import (
    DeadLetter,
    DeadLetterNotFound,
    DeadLetterNotPending,
    DeadLetterStore,
)
from agora_kit.errors import Conflict, NotFound
from agora_kit.params import BIGINT_MAX, Page, SkipDep

MAX_PAGE = 200


class HeaderPublic(BaseModel):
    """One Kafka header, its value as text (undecodable bytes replaced)."""

    model_config = ConfigDict(frozen=True)

    name: str
    value: str


class DeadLetterPublic(BaseModel):
    """A dead letter as the admin API shows it."""

    model_config = ConfigDict(frozen=True)

    id: int
    group: str
    topic: str
    partition: int
    offset: int
    key: str | None
    #: The message value as text (undecodable bytes replaced); ``value_base64`` is exact.
    value: str | None
    value_base64: str | None
    headers: list[HeaderPublic]
    event_id: uuid.UUID | None
    event_type: str | None
    error: str
    error_kind: ErrorKind
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime
    status: DeadLetterStatus
    replayed_at: datetime | None
    discarded_at: datetime | None

    @classmethod
    def from_dead_letter(cls, letter: DeadLetter) -> Self:
        """Build the public view of a stored dead letter."""
        record = letter.record
        return cls(
            id=letter.id,
            group=letter.group,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=None if record.key is None else record.key.decode("utf-8", errors="replace"),
            value=None if record.value is None else record.value.decode("utf-8", errors="replace"),
            value_base64=None
            if record.value is None
            else base64.b64encode(record.value).decode("ascii"),
            headers=[
                HeaderPublic(name=name, value=value.decode("utf-8", errors="replace"))
                for name, value in record.headers
            ],
            event_id=letter.event_id,
            event_type=letter.event_type,
            error=letter.error,
            error_kind=letter.error_kind,
            attempts=letter.attempts,
            first_failed_at=letter.first_failed_at,
            last_failed_at=letter.last_failed_at,
            status=letter.status,
            replayed_at=letter.replayed_at,
            discarded_at=letter.discarded_at,
        )


class DeadLetterPage(Page[DeadLetterPublic]):
    """One page of dead letters, newest first, and how many match in all."""


def dead_letter_router(
    *,
    store: Callable[..., Any],
    admin: Callable[..., Any],
    group: str | None = None,
    tags: Sequence[str] = ("dead-letters",),
) -> APIRouter:
    """Return the admin router; ``store`` is a dependency returning the ``DeadLetterStore``.

    ``admin`` is the dependency that refuses non-admins; ``group`` limits the routes to one
    consumer group's letters (other ids answer 404).
    """
    router = APIRouter(dependencies=[Depends(admin)], tags=list(tags))
    store_dep = Annotated[DeadLetterStore, Depends(store)]
    id_path = Annotated[int, Path(ge=1, le=BIGINT_MAX, description="The dead letter's id.")]

    @router.get("", response_model=DeadLetterPage)
    async def list_dead_letters(
        letters: store_dep,
        skip: SkipDep,
        status: DeadLetterStatus | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")] = 50,
    ) -> DeadLetterPage:
        """List dead letters, newest first."""
        items = await letters.list(group=group, status=status, limit=limit, offset=skip)
        total = await letters.count(group=group, status=status)
        return DeadLetterPage(
            items=[DeadLetterPublic.from_dead_letter(item) for item in items],
            total=total,
            skip=skip,
            limit=limit,
            offset=skip,
        )

    @router.get("/{dead_letter_id}", response_model=DeadLetterPublic)
    async def get_dead_letter(letters: store_dep, dead_letter_id: id_path) -> DeadLetterPublic:
        """Show one dead letter."""
        letter = await letters.get(dead_letter_id, group=group)
        if letter is None:
            raise NotFound(f"no dead letter {dead_letter_id}")
        return DeadLetterPublic.from_dead_letter(letter)

    @router.post("/{dead_letter_id}/replay", response_model=DeadLetterPublic)
    async def replay_dead_letter(letters: store_dep, dead_letter_id: id_path) -> DeadLetterPublic:
        """Hand a pending dead letter back to its consumer."""
        try:
            letter = await letters.replay(dead_letter_id, group=group)
        except DeadLetterNotFound:
            raise NotFound(f"no dead letter {dead_letter_id}") from None
        except DeadLetterNotPending as exc:
            raise Conflict(str(exc)) from None
        return DeadLetterPublic.from_dead_letter(letter)

    @router.delete("/{dead_letter_id}", response_model=DeadLetterPublic)
    async def discard_dead_letter(letters: store_dep, dead_letter_id: id_path) -> DeadLetterPublic:
        """Discard a pending dead letter (it stays listed as discarded)."""
        try:
            letter = await letters.discard(dead_letter_id, group=group)
        except DeadLetterNotFound:
            raise NotFound(f"no dead letter {dead_letter_id}") from None
        except DeadLetterNotPending as exc:
            raise Conflict(str(exc)) from None
        return DeadLetterPublic.from_dead_letter(letter)

    return router
