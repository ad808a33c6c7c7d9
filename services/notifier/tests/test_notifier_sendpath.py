"""The send path's decision, branch by branch: a pure function, no database or SMTP."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from agora_notifier.models import DeliveryStatus
from agora_notifier.rendering import Kind
from agora_notifier.sendpath import (
    Claimed,
    Outcome,
    Step,
    decide,
    on_send_error,
    on_throttled,
)

DUE = Claimed(
    id=1,
    event_id=uuid.uuid4(),
    kind=Kind.WELCOME,
    user_id=7,
    recipient="ada@example.test",
    recipient_name="Ada",
    message_id="<1@agora.test>",
    context={},
    status=DeliveryStatus.PENDING,
    in_flight=False,
    recipient_deleted=False,
)


def claimed(**changes: object) -> Claimed:
    return dataclasses.replace(DUE, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "deduplicated"),
    [(DeliveryStatus.SENT, True), (DeliveryStatus.SKIPPED, False)],
)
def test_a_terminal_delivery_is_finished(status: DeliveryStatus, deduplicated: bool) -> None:
    # Whatever else holds: a sent email is never sent again, even to a deleted recipient.
    for deleted in (False, True):
        decision = decide(claimed(status=status, recipient_deleted=deleted, in_flight=True))
        assert decision.step is Step.FINISHED
        assert decision.reason == status.value
        assert decision.deduplicated is deduplicated


@pytest.mark.parametrize(
    "status",
    [
        DeliveryStatus.PENDING,
        DeliveryStatus.RETRYING,
        DeliveryStatus.THROTTLED,
        DeliveryStatus.FAILED,
    ],
)
def test_an_unfinished_delivery_is_sent(status: DeliveryStatus) -> None:
    decision = decide(claimed(status=status))
    assert decision.step is Step.SEND
    assert decision.resend is False


def test_a_deleted_recipient_is_skipped_except_for_the_goodbye() -> None:
    skipped = decide(claimed(recipient_deleted=True))
    assert (skipped.step, skipped.reason) == (Step.SKIP, "recipient deleted")
    assert decide(claimed(recipient_deleted=True, kind=Kind.GOODBYE)).step is Step.SEND


def test_sending_waits_while_in_flight_and_resends_once_the_lease_is_over() -> None:
    waiting = decide(claimed(status=DeliveryStatus.SENDING, in_flight=True))
    assert waiting.step is Step.WAIT
    resend = decide(claimed(status=DeliveryStatus.SENDING, in_flight=False))
    assert resend.step is Step.SEND
    assert resend.resend is True


def test_throttled_waits_until_the_last_attempt_fails_it() -> None:
    assert on_throttled(final=False) is DeliveryStatus.THROTTLED
    assert on_throttled(final=True) is DeliveryStatus.FAILED


@pytest.mark.parametrize(
    ("permanent", "final", "status", "outcome"),
    [
        (False, False, DeliveryStatus.RETRYING, Outcome.RETRY),
        # The last transient failure ends the delivery; the consumer dead-letters the event.
        (False, True, DeliveryStatus.FAILED, Outcome.RETRY),
        (True, False, DeliveryStatus.FAILED, Outcome.FAILED),
        (True, True, DeliveryStatus.FAILED, Outcome.FAILED),
    ],
)
def test_a_send_error_maps_to_status_and_outcome(
    permanent: bool, final: bool, status: DeliveryStatus, outcome: Outcome
) -> None:
    assert on_send_error(permanent=permanent, final=final) == (status, outcome)
