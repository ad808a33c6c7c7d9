"""Base classes of every payload carried in an envelope's `data`."""

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class Event(BaseModel):
    """A published fact: frozen, and tolerant of fields added by later minor versions."""

    # extra="ignore": consumers must accept data carrying fields they do not know yet.
    model_config = ConfigDict(frozen=True, extra="ignore", use_attribute_docstrings=True)

    event_type: ClassVar[str]
    """The CloudEvents `type`, `agora.<service>.<entity>.<event>.v<N>`."""
    topic: ClassVar[str]
    """The Kafka topic the event is published to."""
    source: ClassVar[str]
    """The CloudEvents `source`, the producing service."""
    key_field: ClassVar[str]
    """The data field whose value, as a string, is the envelope `subject` and the Kafka key."""
    private: ClassVar[bool] = False
    """True for commands that are not part of the public contract."""


class Command(Event):
    """A private request from one service to another; not part of the public contract."""

    private: ClassVar[bool] = True
