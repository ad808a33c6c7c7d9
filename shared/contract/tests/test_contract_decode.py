"""Decoding envelopes into event models: the registry, unknown types, invalid data."""

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from agora_contract import (
    EVENT_TYPES,
    Command,
    ContractError,
    Envelope,
    Event,
    InvalidEvent,
    ItemCreated,
    UnknownEventType,
    UserDeleted,
    decode,
)
from agora_contract.samples import sample_envelopes
from agora_contract.topics import DOMAIN_TOPICS, NOTIFIER_COMMANDS, SOURCES

SAMPLES = sample_envelopes()
TYPE_NAME = re.compile(r"agora\.(users|items|notifier)\.[a-z_]+\.[a-z_]+\.v1")

PINNED_FIELDS = {
    "agora.users.user.registered.v1": ["user_id", "email", "name", "registered_at"],
    "agora.users.user.updated.v1": ["user_id", "changes"],
    "agora.users.user.email_changed.v1": ["user_id", "old_email", "new_email"],
    "agora.users.user.deleted.v1": ["user_id"],
    "agora.items.item.created.v1": [
        "item_id",
        "owner_id",
        "name",
        "description",
        "price",
        "currency",
        "tags",
        "status",
    ],
    "agora.items.item.updated.v1": ["item_id", "owner_id", "changes"],
    "agora.items.item.deleted.v1": ["item_id", "owner_id", "reason"],
    "agora.notifier.notification.sent.v1": ["delivery_id", "event_id", "kind", "user_id", "status"],
    "agora.notifier.notification.failed.v1": [
        "delivery_id",
        "event_id",
        "kind",
        "user_id",
        "status",
        "error",
    ],
    "agora.users.command.send_email_verification.v1": [
        "user_id",
        "email",
        "name",
        "token",
        "expires_at",
    ],
    "agora.users.command.send_password_reset.v1": [
        "user_id",
        "email",
        "name",
        "token",
        "expires_at",
    ],
}


def _with_data(event_type: str, **changes: Any) -> Envelope:
    """Return the sample envelope of a type with some data fields replaced."""
    sample = SAMPLES[event_type]
    return sample.model_copy(update={"data": {**sample.data, **changes}})


def test_the_registry_holds_exactly_the_pinned_types_and_fields() -> None:
    assert {t: list(m.model_fields) for t, m in EVENT_TYPES.items()} == PINNED_FIELDS


@pytest.mark.parametrize("model", EVENT_TYPES.values(), ids=lambda m: m.__name__)
def test_every_model_names_its_type_topic_source_and_key(model: type[Event]) -> None:
    assert TYPE_NAME.fullmatch(model.event_type)
    assert model.topic in DOMAIN_TOPICS
    assert model.source in SOURCES
    assert model.key_field in model.model_fields
    assert model.model_config.get("frozen") is True
    assert model.private == (model.topic == NOTIFIER_COMMANDS) == issubclass(model, Command)


def test_events_are_frozen() -> None:
    event = decode(SAMPLES["agora.users.user.deleted.v1"])
    assert isinstance(event, UserDeleted)
    with pytest.raises(ValueError, match="frozen"):
        event.user_id = 3  # type: ignore[misc]


def test_unknown_type_raises_unknown_event_type() -> None:
    envelope = SAMPLES["agora.users.user.deleted.v1"].model_copy(
        update={"type": "agora.users.user.teleported.v1"}
    )
    with pytest.raises(UnknownEventType) as caught:
        decode(envelope)
    assert caught.value.event_type == "agora.users.user.teleported.v1"
    assert isinstance(caught.value, ContractError)
    assert isinstance(caught.value, ValueError)


def test_a_known_type_from_the_wrong_source_is_invalid() -> None:
    envelope = SAMPLES["agora.users.user.deleted.v1"].model_copy(update={"source": "/agora/items"})
    with pytest.raises(InvalidEvent, match="/agora/users"):
        decode(envelope)


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        ("agora.users.user.registered.v1", {"user_id": 0}),
        ("agora.users.user.registered.v1", {"user_id": "abc"}),
        ("agora.users.user.registered.v1", {"email": "not an address"}),
        ("agora.users.user.registered.v1", {"registered_at": "2025-01-01T00:00:00"}),
        ("agora.users.user.updated.v1", {"changes": {}}),
        ("agora.users.user.updated.v1", {"changes": {"name": {"old": "a"}}}),
        ("agora.users.user.updated.v1", {"changes": {"Bad Name": {"old": 1, "new": 2}}}),
        ("agora.items.item.created.v1", {"price": 19.9}),
        ("agora.items.item.created.v1", {"price": "1E+3"}),
        ("agora.items.item.created.v1", {"price": "-1.00"}),
        ("agora.items.item.created.v1", {"price": "NaN"}),
        ("agora.items.item.created.v1", {"currency": "eur"}),
        ("agora.items.item.created.v1", {"tags": "antiques"}),
        ("agora.items.item.created.v1", {"name": ""}),
        ("agora.items.item.deleted.v1", {"reason": "spam"}),
        ("agora.notifier.notification.sent.v1", {"event_id": "nope"}),
        ("agora.notifier.notification.failed.v1", {"error": None}),
        ("agora.users.command.send_password_reset.v1", {"token": ""}),
    ],
)
def test_data_that_fails_its_model_raises_invalid_event(
    event_type: str, data: dict[str, Any]
) -> None:
    field = next(iter(data))
    with pytest.raises(InvalidEvent, match=field):
        decode(_with_data(event_type, **data))


@pytest.mark.parametrize("field", ["user_id", "email", "name", "registered_at"])
def test_a_missing_field_raises_invalid_event(field: str) -> None:
    sample = SAMPLES["agora.users.user.registered.v1"]
    data = {k: v for k, v in sample.data.items() if k != field}
    with pytest.raises(InvalidEvent, match=f"{field}: Field required"):
        decode(sample.model_copy(update={"data": data}))


def test_unknown_fields_in_data_are_ignored() -> None:
    event = decode(_with_data("agora.items.item.created.v1", colour="green", legacy={"a": 1}))
    assert isinstance(event, ItemCreated)
    assert "colour" not in event.model_dump()
    assert event.price == Decimal("1843.00")


def test_unknown_fields_survive_bytes_and_are_ignored_by_decode() -> None:
    document = json.loads(SAMPLES["agora.users.user.deleted.v1"].to_bytes())
    document["data"]["reason_code"] = "gdpr"
    event = decode(Envelope.from_bytes(json.dumps(document).encode()))
    assert event.model_dump() == {"user_id": 42}


def test_decoded_values_have_python_types() -> None:
    event = decode(SAMPLES["agora.items.item.created.v1"])
    assert isinstance(event, ItemCreated)
    assert event.price == Decimal("1843.00")
    assert event.model_dump(mode="json")["price"] == "1843.00"
    registered = decode(SAMPLES["agora.users.user.registered.v1"])
    assert registered.model_dump()["registered_at"].tzinfo is UTC
    assert registered.model_dump()["registered_at"] < datetime.now(UTC)


def test_secret_tokens_stay_out_of_reprs() -> None:
    command = decode(SAMPLES["agora.users.command.send_password_reset.v1"])
    assert command.model_dump()["token"] not in repr(command)
