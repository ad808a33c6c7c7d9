"""The CloudEvents 1.0 envelope that carries every event, structured JSON in the Kafka value."""

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, Self
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agora_contract.base import Event
from agora_contract.errors import InvalidEvent
from agora_contract.fields import UtcDatetime

CONTENT_TYPE: Final = "application/cloudevents+json"
"""The Kafka `content-type` header of a structured CloudEvent."""
EXTENSIONS: Final = ("correlationid", "traceparent", "aggregateversion")

NonEmpty = Annotated[str, Field(min_length=1)]


class Envelope(BaseModel):
    """A CloudEvents 1.0 event; unknown extension attributes are accepted and kept."""

    model_config = ConfigDict(frozen=True, extra="allow", use_attribute_docstrings=True)

    specversion: Literal["1.0"] = "1.0"
    """The CloudEvents version."""
    id: UUID
    """Unique per event; a replayed event keeps it, so subscribers deduplicate on it."""
    source: NonEmpty
    """The producing service, e.g. `/agora/users`."""
    type: NonEmpty
    """The event type, e.g. `agora.users.user.registered.v1`."""
    subject: NonEmpty
    """The aggregate id as a string; also the Kafka key."""
    time: UtcDatetime
    """When the change happened, RFC 3339 in UTC."""
    datacontenttype: Literal["application/json"] = "application/json"
    """The media type of `data`."""
    data: dict[str, Any]
    """The event's payload, as its type's schema describes."""
    correlationid: str | None = None
    """The `X-Request-ID` of the request that caused the event."""
    traceparent: str | None = None
    """The W3C trace context of the producing span, when tracing is on."""
    aggregateversion: Annotated[int, Field(ge=0)] | None = None
    """The aggregate's version after the change; projections skip older versions."""

    @classmethod
    def wrap(
        cls,
        event: Event,
        *,
        subject: str | None = None,
        id: UUID | None = None,
        time: datetime | None = None,
        correlationid: str | None = None,
        traceparent: str | None = None,
        aggregateversion: int | None = None,
    ) -> Self:
        """Wrap an event; `subject` defaults to, and must equal, the event's key field."""
        expected = str(getattr(event, event.key_field))
        if subject is not None and subject != expected:
            raise ValueError(
                f"subject {subject!r} of {event.event_type} must be its {event.key_field}, "
                f"{expected!r}: the key decides partition and ordering"
            )
        return cls(
            id=id or uuid4(),
            source=event.source,
            type=event.event_type,
            subject=expected,
            time=time or datetime.now(UTC),
            data=event.model_dump(mode="json"),
            correlationid=correlationid,
            traceparent=traceparent,
            aggregateversion=aggregateversion,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form, leaving out extensions that are not set."""
        dumped = self.model_dump(mode="json")
        return {k: v for k, v in dumped.items() if not (k in EXTENSIONS and v is None)}

    def to_bytes(self) -> bytes:
        """Serialise as compact UTF-8 JSON, the Kafka message value."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> Self:
        """Parse a Kafka message value; raise InvalidEvent if it is not a valid envelope."""
        if not raw:
            raise InvalidEvent("empty message value: expected a CloudEvents JSON object")
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            raise InvalidEvent.from_validation("invalid CloudEvents envelope", exc) from exc

    def kafka_key(self) -> bytes:
        """Return the Kafka message key, the subject."""
        return self.subject.encode()

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        """Return the Kafka headers: `ce_id`, `ce_type`, `content-type` (and `traceparent`)."""
        headers = [
            ("ce_id", str(self.id).encode()),
            ("ce_type", self.type.encode()),
            ("content-type", CONTENT_TYPE.encode()),
        ]
        if self.traceparent is not None:
            # Lets tracing instrumentation that reads headers join the producer's trace.
            headers.append(("traceparent", self.traceparent.encode()))
        return headers
