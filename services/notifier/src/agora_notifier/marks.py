"""What an attempt writes on a delivery row: sending, a final or waiting state, the outcome."""

from __future__ import annotations

import sqlalchemy as sa
from agora_contract import NotificationFailed, NotificationSent
from agora_kit.uow import UnitOfWork

from agora_notifier import models
from agora_notifier.models import DeliveryStatus
from agora_notifier.postman_config import MAX_ERROR
from agora_notifier.records import scrub_user
from agora_notifier.rendering import Kind
from agora_notifier.sendpath import Claimed

D = models.delivery


async def sending(uow: UnitOfWork, delivery: Claimed, subject: str) -> None:
    """Move the delivery to ``sending`` (committed before SMTP sees the message)."""
    await uow.session.execute(
        sa.update(D)
        .where(D.c.id == delivery.id)
        .values(
            status=DeliveryStatus.SENDING.value,
            attempts=D.c.attempts + 1,
            sending_at=sa.func.now(),
            subject=subject,
            updated_at=sa.func.now(),
        )
    )


async def status(
    uow: UnitOfWork, row: Claimed, status: DeliveryStatus, *, error: str | None = None
) -> None:
    """Set the delivery's status (and its last error)."""
    await uow.session.execute(
        sa.update(D)
        .where(D.c.id == row.id)
        .values(
            status=status.value,
            last_error=error[:MAX_ERROR] if error else None,
            updated_at=sa.func.now(),
        )
    )


async def failed(uow: UnitOfWork, row: Claimed, error: str, *, permanent: bool) -> None:
    """Record a failure (``failed`` or ``retrying``) and queue ``NotificationFailed``."""
    await status(
        uow, row, DeliveryStatus.FAILED if permanent else DeliveryStatus.RETRYING, error=error
    )
    uow.add_event(
        NotificationFailed(
            delivery_id=row.id,
            event_id=row.event_id,
            kind=row.kind,
            user_id=row.user_id,
            status="dead_lettered" if permanent else "retrying",
            error=error[:MAX_ERROR],
        )
    )


async def sent(uow: UnitOfWork, row: Claimed) -> None:
    """Record the SMTP server's acceptance and queue ``NotificationSent``."""
    await uow.session.execute(
        sa.update(D)
        .where(D.c.id == row.id)
        .values(
            status=DeliveryStatus.SENT.value,
            sent_at=sa.func.now(),
            last_error=None,
            updated_at=sa.func.now(),
        )
    )
    if row.kind == Kind.GOODBYE:
        # The last email to a deleted user is out: its address goes too.
        await scrub_user(uow.session, row.user_id)
    uow.add_event(
        NotificationSent(
            delivery_id=row.id, event_id=row.event_id, kind=row.kind, user_id=row.user_id
        )
    )
