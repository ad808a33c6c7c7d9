"""The table of every event type, and decoding an envelope into its event model."""

from collections.abc import Iterable

from pydantic import ValidationError

from agora_contract.base import Event
from agora_contract.commands import SendEmailVerification, SendPasswordReset
from agora_contract.envelope import Envelope
from agora_contract.errors import InvalidEvent, UnknownEventType
from agora_contract.items import ItemCreated, ItemDeleted, ItemUpdated
from agora_contract.notifications import NotificationFailed, NotificationSent
from agora_contract.users import UserDeleted, UserEmailChanged, UserRegistered, UserUpdated


def _by_type(models: Iterable[type[Event]]) -> dict[str, type[Event]]:
    """Key models by event type, refusing two models with the same type."""
    table: dict[str, type[Event]] = {}
    for model in models:
        if model.event_type in table:
            raise RuntimeError(f"two models share the event type {model.event_type!r}")
        table[model.event_type] = model
    return table


EVENT_TYPES: dict[str, type[Event]] = _by_type(
    [
        UserRegistered,
        UserUpdated,
        UserEmailChanged,
        UserDeleted,
        ItemCreated,
        ItemUpdated,
        ItemDeleted,
        NotificationSent,
        NotificationFailed,
        SendEmailVerification,
        SendPasswordReset,
    ]
)
"""Every event and command of this contract version, keyed by its CloudEvents `type`."""


def decode(envelope: Envelope) -> Event:
    """Return the event an envelope carries; raise UnknownEventType or InvalidEvent."""
    model = EVENT_TYPES.get(envelope.type)
    if model is None:
        raise UnknownEventType(envelope.type)
    if envelope.source != model.source:
        raise InvalidEvent(
            f"{envelope.type} comes from {model.source!r}, not from {envelope.source!r}"
        )
    try:
        return model.model_validate(envelope.data)
    except ValidationError as exc:
        raise InvalidEvent.from_validation(f"invalid data for {envelope.type}", exc) from exc
