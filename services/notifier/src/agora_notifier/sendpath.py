"""The send path's decision: what one attempt of a delivery does, as a pure function.

The postman claims a delivery row (locked), turns it into a :class:`Claimed`, asks
:func:`decide`, and carries the answer out: claim → decide → build → throttle → mark
``sending`` → send → mark the outcome. Nothing here touches a database, a clock or a
socket, so every branch is tested in microseconds (``tests/test_notifier_sendpath.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from agora_notifier.models import TERMINAL, DeliveryStatus
from agora_notifier.rendering import Kind


class Outcome(StrEnum):
    """What one attempt came to."""

    DONE = "done"  # sent, skipped, or already sent before
    RETRY = "retry"  # try again later
    FAILED = "failed"  # permanent: the event becomes a dead letter


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery row as the attempt that locked it sees it."""

    id: int
    event_id: uuid.UUID
    kind: str
    user_id: int
    recipient: str
    recipient_name: str | None
    message_id: str
    context: Mapping[str, Any]
    status: DeliveryStatus
    #: Another attempt moved it to ``sending`` less than the send lease ago.
    in_flight: bool
    #: The recipient's account is gone (the projection says so).
    recipient_deleted: bool

    @classmethod
    def from_row(cls, row: Any) -> Claimed:
        """From the claim query's row (delivery columns, ``in_flight``, ``deleted_at``)."""
        return cls(
            id=row.id,
            event_id=row.event_id,
            kind=row.kind,
            user_id=row.user_id,
            recipient=row.recipient,
            recipient_name=row.recipient_name,
            message_id=row.message_id,
            context=row.context,
            status=DeliveryStatus(row.status),
            in_flight=bool(row.in_flight),
            recipient_deleted=row.deleted_at is not None,
        )


class Step(StrEnum):
    """What the attempt does with a claimed delivery."""

    FINISHED = "finished"  # already terminal: nothing to do
    SKIP = "skip"  # never send it: mark it skipped
    WAIT = "wait"  # another attempt is sending it right now: retry later
    SEND = "send"  # build, throttle, mark sending, send


@dataclass(frozen=True, slots=True)
class Decision:
    """:func:`decide`'s answer, with the reason the attempt records or reports."""

    step: Step
    reason: str
    #: SEND after an attempt that died between SMTP and its mark: this may duplicate it
    #: (with the same Message-ID, so the duplicate is detectable).
    resend: bool = False
    #: FINISHED on a delivery that was sent before (a redelivered event).
    deduplicated: bool = False


def decide(delivery: Claimed) -> Decision:
    """What to do with a claimed delivery, from its state alone."""
    if delivery.status in TERMINAL:
        return Decision(
            Step.FINISHED,
            delivery.status.value,
            deduplicated=delivery.status is DeliveryStatus.SENT,
        )
    # The goodbye email goes to a deleted account by design: it is the last one.
    if delivery.recipient_deleted and delivery.kind != Kind.GOODBYE:
        return Decision(Step.SKIP, "recipient deleted")
    if delivery.status is DeliveryStatus.SENDING:
        if delivery.in_flight:
            return Decision(Step.WAIT, "an attempt is in flight elsewhere")
        return Decision(Step.SEND, "resending after an unfinished attempt", resend=True)
    return Decision(Step.SEND, "due")


def on_throttled(*, final: bool) -> DeliveryStatus:
    """The status of a throttled delivery: ``throttled``, or ``failed`` on the last attempt."""
    return DeliveryStatus.FAILED if final else DeliveryStatus.THROTTLED


def on_send_error(*, permanent: bool, final: bool) -> tuple[DeliveryStatus, Outcome]:
    """The status and outcome after SMTP refused or broke.

    The last transient failure also ends the delivery (``failed``): the consumer
    dead-letters the event as exhausted, and a replay starts it afresh.
    """
    status = DeliveryStatus.FAILED if permanent or final else DeliveryStatus.RETRYING
    return status, Outcome.FAILED if permanent else Outcome.RETRY
