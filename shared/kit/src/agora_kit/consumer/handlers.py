"""What a handler sees and how it signals failure; the handler table; decoding a record."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

from agora_contract import EVENT_TYPES, Envelope, Event, InvalidEvent, UnknownEventType, decode

from agora_kit.consumer.deadletter_table import ErrorKind
from agora_kit.consumer.retry import Record


class TransientError(Exception):
    """Retry later: the failure may go away (a dependency is down, a 451 from SMTP)."""


class PermanentError(Exception):
    """Retrying cannot help (a 550 from SMTP, a rule the event breaks): dead-letter it."""


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """Where the event came from and which attempt this is."""

    group: str
    record: Record
    #: 1 for the first delivery; higher for retries.
    attempt: int = 1
    #: True when an operator replayed the event from the dead letters.
    replayed: bool = False

    @property
    def topic(self) -> str:
        """The topic the event was consumed from."""
        return self.record.topic

    @property
    def partition(self) -> int:
        """The partition the event was consumed from."""
        return self.record.partition

    @property
    def offset(self) -> int:
        """The event's offset in its partition."""
        return self.record.offset


#: ``async def handle(ctx, envelope, event) -> None``; raise to signal a failure.
Handler = Callable[[HandlerContext, Envelope, Event], Awaitable[None]]

E = TypeVar("E", bound=Event)


class HandlerTable(Mapping[str, Handler]):
    """Handlers by event type, registered with their event class (typed for mypy)."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def add(
        self, event_cls: type[E], handler: Callable[[HandlerContext, Envelope, E], Awaitable[None]]
    ) -> None:
        """Register ``handler`` for ``event_cls`` (one handler per type)."""
        event_type = event_cls.event_type
        if event_type in self._handlers:
            raise ValueError(f"a handler for {event_type!r} is already registered")

        async def typed(ctx: HandlerContext, envelope: Envelope, event: Event) -> None:
            if not isinstance(event, event_cls):  # the contract decoded another model
                raise PermanentError(f"expected {event_cls.__name__}, got {type(event).__name__}")
            await handler(ctx, envelope, event)

        self._handlers[event_type] = typed

    def on(
        self, event_cls: type[E]
    ) -> Callable[
        [Callable[[HandlerContext, Envelope, E], Awaitable[None]]],
        Callable[[HandlerContext, Envelope, E], Awaitable[None]],
    ]:
        """Decorator form of ``add``."""

        def register(
            handler: Callable[[HandlerContext, Envelope, E], Awaitable[None]],
        ) -> Callable[[HandlerContext, Envelope, E], Awaitable[None]]:
            self.add(event_cls, handler)
            return handler

        return register

    def __getitem__(self, event_type: str) -> Handler:
        return self._handlers[event_type]

    def __iter__(self) -> Iterator[str]:
        return iter(self._handlers)

    def __len__(self) -> int:
        return len(self._handlers)


@dataclass(frozen=True, slots=True)
class Poison:
    """A record that can never be handled as it is: it becomes a dead letter at once."""

    kind: ErrorKind
    error: str
    event_id: uuid.UUID | None = None
    event_type: str | None = None


@dataclass(frozen=True, slots=True)
class Decoded:
    """A valid event; ``handler`` is None when this consumer does not handle its type."""

    envelope: Envelope
    event: Event | None
    handler: Handler | None


def parse(
    record: Record, handlers: Mapping[str, Handler], *, dead_letter_unhandled: bool = False
) -> Poison | Decoded:
    """Validate the envelope, the type and (for handled types) the data of ``record``."""
    try:
        envelope = Envelope.from_bytes(record.value)
    except InvalidEvent as exc:
        return Poison(ErrorKind.MALFORMED, str(exc))
    if envelope.type not in EVENT_TYPES:
        return Poison(
            ErrorKind.UNKNOWN_TYPE,
            f"unknown event type {envelope.type!r}",
            envelope.id,
            envelope.type,
        )
    handler = handlers.get(envelope.type)
    if handler is None:
        if dead_letter_unhandled:
            return Poison(
                ErrorKind.UNKNOWN_TYPE,
                f"no handler for {envelope.type!r}",
                envelope.id,
                envelope.type,
            )
        # Not validated: an event we skip cannot poison anything.
        return Decoded(envelope, None, None)
    try:
        event = decode(envelope)
    except UnknownEventType as exc:
        return Poison(ErrorKind.UNKNOWN_TYPE, str(exc), envelope.id, envelope.type)
    except InvalidEvent as exc:
        return Poison(ErrorKind.INVALID, str(exc), envelope.id, envelope.type)
    return Decoded(envelope, event, handler)


def type_label(event_type: str | None) -> str:
    """Return a metric label for ``event_type`` that a hostile producer cannot multiply."""
    if event_type is None:
        return "<malformed>"
    return event_type if event_type in EVENT_TYPES else "<unknown>"


def describe(exc: BaseException) -> str:
    """Return ``Type: message`` for an error row or log line."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
