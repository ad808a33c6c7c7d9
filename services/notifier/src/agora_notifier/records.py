"""Delivery records: planned emails, their insertion, and erasure of a deleted user's data."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from agora_contract import Envelope
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from agora_notifier import models
from agora_notifier.models import DeliveryStatus
from agora_notifier.rendering import Kind, message_id
from agora_notifier.sendpath import Claimed

D = models.delivery


@dataclass(frozen=True, slots=True)
class Planned:
    """One email an event asks for; ``skip_reason`` records it as skipped instead."""

    kind: Kind
    user_id: int
    recipient: str
    recipient_name: str | None
    context: dict[str, Any] = field(default_factory=dict)
    skip_reason: str | None = None


def erased_recipient() -> sa.ColumnElement[str]:
    """SQL for the digest that replaces an address when its user is erased."""
    digest = sa.func.encode(sa.func.sha256(sa.func.convert_to(D.c.recipient, "UTF8")), "hex")
    return sa.literal("erased:") + digest


async def scrub_user(session: AsyncSession, user_id: int) -> None:
    """Erase the personal data of a deleted user's delivery records (ids and states stay)."""
    await session.execute(
        sa.update(D)
        .where(D.c.user_id == user_id, D.c.recipient.not_like("erased:%"))
        .values(
            recipient=erased_recipient(),
            recipient_name=None,
            subject=None,
            context={},
            updated_at=sa.func.now(),
        )
    )


#: Built once with bound parameters (``p_`` + column): per call, ``.values(...)`` of literals
#: costs SQLAlchemy about 100 us of CPU for the statement's cache key.
_RECORD_COLUMNS = (
    "event_id", "event_type", "kind", "user_id", "recipient", "recipient_name", "context",
    "status", "message_id", "last_error",
)  # fmt: skip
_RECORD = (
    pg_insert(D)
    .values({name: sa.bindparam(f"p_{name}") for name in _RECORD_COLUMNS})
    .on_conflict_do_nothing(constraint="uq_delivery_event_kind_recipient")
    .returning(D.c.id)
)


async def record(
    session: AsyncSession, envelope: Envelope, planned: Sequence[Planned], *, domain: str
) -> list[Claimed] | None:
    """Insert the planned deliveries of an event (a redelivery inserts nothing new).

    Return the deliveries left to attempt, as the rows just inserted ``pending`` (none when
    every one is recorded final: skipped, or nothing planned). None when a delivery was
    there already, in a state only a fresh look can tell.
    """
    pending: list[Claimed] = []
    known = False
    for mail in planned:
        status = DeliveryStatus.SKIPPED if mail.skip_reason else DeliveryStatus.PENDING
        params = {
            "p_event_id": envelope.id,
            "p_event_type": envelope.type,
            "p_kind": mail.kind.value,
            "p_user_id": mail.user_id,
            "p_recipient": mail.recipient,
            "p_recipient_name": mail.recipient_name,
            "p_context": mail.context,
            "p_status": status.value,
            "p_message_id": message_id(envelope.id, mail.kind.value, mail.recipient, domain),
            "p_last_error": mail.skip_reason,
        }
        inserted = (await session.execute(_RECORD, params)).scalar_one_or_none()
        if inserted is None:
            known = True
        elif status is DeliveryStatus.PENDING:
            pending.append(_as_claimed(inserted, params))
    return None if known else pending


def _as_claimed(delivery_id: int, params: Mapping[str, Any]) -> Claimed:
    """The row just inserted, as an attempt that locked it would read it back."""
    return Claimed(
        id=delivery_id,
        event_id=params["p_event_id"],
        kind=params["p_kind"],
        user_id=params["p_user_id"],
        recipient=params["p_recipient"],
        recipient_name=params["p_recipient_name"],
        message_id=params["p_message_id"],
        # Read back, the context is what its JSON says: render from the same values.
        context=json.loads(json.dumps(params["p_context"])),
        status=DeliveryStatus.PENDING,
        in_flight=False,
        # The planner read the recipient live under a row lock in this same transaction.
        recipient_deleted=False,
    )


async def recent_to(
    session: AsyncSession, recipient: str, *, kinds: Sequence[str], within_s: int
) -> int:
    """How many emails of ``kinds`` were recorded for ``recipient`` (not skipped) lately."""
    since = sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, within_s)
    stmt = (
        sa.select(sa.func.count())
        .select_from(D)
        .where(
            D.c.recipient == recipient,
            D.c.created_at > since,
            D.c.kind.in_(list(kinds)),
            D.c.status != DeliveryStatus.SKIPPED.value,
        )
    )
    return int((await session.execute(stmt)).scalar_one())
