"""Sample envelopes, one per event type: the seed of each committed example file."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

from agora_contract.base import Event
from agora_contract.commands import SendEmailVerification, SendPasswordReset
from agora_contract.envelope import Envelope
from agora_contract.fields import FieldChange
from agora_contract.items import ItemCreated, ItemDeleted, ItemUpdated
from agora_contract.notifications import NotificationFailed, NotificationSent
from agora_contract.registry import EVENT_TYPES
from agora_contract.users import UserDeleted, UserEmailChanged, UserRegistered, UserUpdated

_AT = datetime(2025, 3, 14, 9, 26, 53, 589000, tzinfo=UTC)
_REQUEST_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
_CAUSE = UUID("0195939a-53a5-7c1e-9d2b-3f4a5b6c7d8e")


def _samples() -> list[tuple[Event, int | None]]:
    """Return one sample event per type, with its aggregate version (None when it has none)."""
    return [
        (UserRegistered(user_id=42, email="ada@example.org", name="Ada", registered_at=_AT), 1),
        (
            UserUpdated(user_id=42, changes={"name": FieldChange(old="Ada", new="Ada L.")}),
            2,
        ),
        (UserEmailChanged(user_id=42, old_email="ada@example.org", new_email="ada@example.com"), 3),
        (UserDeleted(user_id=42), 4),
        (
            ItemCreated(
                item_id=7,
                owner_id=42,
                name="Analytical engine",
                description="Brass, hand-cranked, lightly used.",
                price=Decimal("1843.00"),
                currency="GBP",
                tags=["antiques", "computing"],
                status="active",
            ),
            1,
        ),
        (
            ItemUpdated(
                item_id=7,
                owner_id=42,
                changes={
                    "price": FieldChange(old="1843.00", new="1500.00"),
                    "tags": FieldChange(old=["antiques", "computing"], new=["antiques"]),
                },
            ),
            2,
        ),
        (ItemDeleted(item_id=7, owner_id=42, reason="owner_request"), 3),
        (NotificationSent(delivery_id=1001, event_id=_CAUSE, kind="welcome", user_id=42), 1),
        (
            NotificationFailed(
                delivery_id=1002,
                event_id=_CAUSE,
                kind="item_listed",
                user_id=42,
                status="retrying",
                error="451 4.3.0 Temporary failure, try again later",
            ),
            1,
        ),
        _command(SendEmailVerification, "dmVyaWZ5LWVtYWlsLXNhbXBsZS10b2tlbg"),
        _command(SendPasswordReset, "cmVzZXQtcGFzc3dvcmQtc2FtcGxlLXRva2Vu"),
    ]


def _command(model: Callable[..., Event], token: str) -> tuple[Event, int | None]:
    """Return a sample mail command (commands carry no aggregate version)."""
    event = model(
        user_id=42,
        email="ada@example.org",
        name="Ada",
        token=token,
        expires_at=_AT + timedelta(hours=24),
    )
    return event, None


def sample_envelopes() -> dict[str, Envelope]:
    """Return a deterministic sample envelope for every event type, keyed by type."""
    result: dict[str, Envelope] = {}
    for index, (event, version) in enumerate(_samples(), start=1):
        result[event.event_type] = Envelope.wrap(
            event,
            id=UUID(int=(0x0195939A_53A5_7000_8000 << 48) + index),
            time=_AT,
            correlationid=_REQUEST_ID,
            traceparent=_TRACEPARENT,
            aggregateversion=version,
        )
    missing = set(EVENT_TYPES) - set(result)
    if missing:
        raise RuntimeError(f"no sample for {sorted(missing)}")
    return result
