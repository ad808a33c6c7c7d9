"""The CloudEvents envelope: wrap, bytes, headers, parsing errors."""

import json
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

import pytest
from agora_contract import (
    CONTENT_TYPE,
    ContractError,
    Envelope,
    FieldChange,
    InvalidEvent,
    UserRegistered,
    UserUpdated,
    decode,
)
from agora_contract.samples import sample_envelopes

AT = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def _registered() -> UserRegistered:
    """Return a valid UserRegistered."""
    return UserRegistered(user_id=5, email="grace@example.org", name="Grace", registered_at=AT)


@pytest.mark.parametrize("envelope", sample_envelopes().values(), ids=lambda e: e.type)
def test_round_trip_wrap_to_bytes_from_bytes_decode(envelope: Envelope) -> None:
    event = decode(envelope)
    again = Envelope.wrap(
        event,
        id=envelope.id,
        time=envelope.time,
        correlationid=envelope.correlationid,
        traceparent=envelope.traceparent,
        aggregateversion=envelope.aggregateversion,
    )
    parsed = Envelope.from_bytes(again.to_bytes())
    assert parsed == envelope
    assert decode(parsed) == event


def test_wrap_fills_attributes_from_the_event() -> None:
    before = datetime.now(UTC)
    envelope = Envelope.wrap(_registered(), subject="5", correlationid="req-1")
    assert envelope.specversion == "1.0"
    assert envelope.source == "/agora/users"
    assert envelope.type == "agora.users.user.registered.v1"
    assert envelope.subject == "5"
    assert envelope.datacontenttype == "application/json"
    assert envelope.data == {
        "user_id": 5,
        "email": "grace@example.org",
        "name": "Grace",
        "registered_at": "2025-01-02T03:04:05Z",
    }
    assert envelope.id.version == 4
    assert before <= envelope.time <= datetime.now(UTC)
    assert envelope.time.tzinfo is UTC
    assert Envelope.wrap(_registered()).id != Envelope.wrap(_registered()).id


def test_wrap_refuses_a_subject_other_than_the_key_field() -> None:
    with pytest.raises(ValueError, match="user_id"):
        Envelope.wrap(_registered(), subject="6")


def test_time_is_normalised_to_utc_and_serialised_rfc3339() -> None:
    plus_two = timezone(timedelta(hours=2))
    envelope = Envelope.wrap(_registered(), time=datetime(2025, 1, 2, 5, 4, 5, tzinfo=plus_two))
    assert envelope.time == AT
    assert json.loads(envelope.to_bytes())["time"] == "2025-01-02T03:04:05Z"


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        Envelope.wrap(_registered(), time=datetime(2025, 1, 2, 3, 4, 5))


def test_to_bytes_is_compact_and_omits_unset_extensions() -> None:
    raw = Envelope.wrap(_registered(), id=UUID(int=1), time=AT).to_bytes()
    assert b" " not in raw.replace(b'"Grace"', b"")
    document = json.loads(raw)
    assert set(document) == {
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "data",
    }
    assert document["id"] == "00000000-0000-0000-0000-000000000001"


def test_set_extensions_are_serialised() -> None:
    envelope = Envelope.wrap(
        _registered(), correlationid="req-9", traceparent="00-a-b-01", aggregateversion=3
    )
    document = json.loads(envelope.to_bytes())
    assert document["correlationid"] == "req-9"
    assert document["traceparent"] == "00-a-b-01"
    assert document["aggregateversion"] == 3


def test_null_values_inside_data_are_kept() -> None:
    updated = UserUpdated(user_id=5, changes={"name": FieldChange(old=None, new="Grace")})
    document = json.loads(Envelope.wrap(updated).to_bytes())
    assert document["data"]["changes"] == {"name": {"old": None, "new": "Grace"}}


def test_unknown_extension_attributes_are_accepted_and_kept() -> None:
    document = json.loads(Envelope.wrap(_registered()).to_bytes())
    document["partitionkey"] = "5"
    parsed = Envelope.from_bytes(json.dumps(document).encode())
    assert parsed.model_extra == {"partitionkey": "5"}
    assert json.loads(parsed.to_bytes())["partitionkey"] == "5"


def test_kafka_headers_and_key() -> None:
    envelope = Envelope.wrap(_registered(), id=UUID(int=7))
    assert envelope.kafka_headers() == [
        ("ce_id", b"00000000-0000-0000-0000-000000000007"),
        ("ce_type", b"agora.users.user.registered.v1"),
        ("content-type", b"application/cloudevents+json"),
    ]
    assert CONTENT_TYPE == "application/cloudevents+json"
    assert envelope.kafka_key() == b"5"
    traced = Envelope.wrap(_registered(), traceparent="00-abc-def-01")
    assert ("traceparent", b"00-abc-def-01") in traced.kafka_headers()


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{not json",
        b"\xff\xfe\x00",
        b"[1, 2]",
        b'"just a string"',
        b"{}",
    ],
)
def test_malformed_messages_raise_invalid_event(raw: bytes) -> None:
    with pytest.raises(InvalidEvent):
        Envelope.from_bytes(raw)


def test_a_missing_value_raises_invalid_event() -> None:
    with pytest.raises(InvalidEvent, match="empty"):
        Envelope.from_bytes(None)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("specversion", "0.3"),
        ("id", "not-a-uuid"),
        ("time", "yesterday"),
        ("time", "2025-01-02T03:04:05"),
        ("subject", ""),
        ("data", [1, 2]),
        ("datacontenttype", "text/xml"),
        ("aggregateversion", -1),
    ],
)
def test_an_invalid_attribute_raises_invalid_event(field: str, value: object) -> None:
    document = json.loads(Envelope.wrap(_registered()).to_bytes())
    document[field] = value
    with pytest.raises(InvalidEvent, match=field) as caught:
        Envelope.from_bytes(json.dumps(document).encode())
    assert isinstance(caught.value, ContractError)
    assert isinstance(caught.value, ValueError)


def test_errors_name_the_field_but_never_echo_personal_data() -> None:
    document = json.loads(Envelope.wrap(_registered()).to_bytes())
    document["time"] = "grace@example.org"
    with pytest.raises(InvalidEvent) as caught:
        Envelope.from_bytes(json.dumps(document).encode())
    assert "time" in str(caught.value)
    assert "grace@example.org" not in str(caught.value)
    assert caught.value.errors
