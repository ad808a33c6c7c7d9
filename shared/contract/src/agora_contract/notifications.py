"""Events of the notifier, published to `notifications.events` keyed by delivery id."""

from typing import ClassVar
from uuid import UUID

from agora_contract.base import Event
from agora_contract.fields import Code, Id
from agora_contract.topics import NOTIFICATIONS_EVENTS, NOTIFIER_SOURCE


class _NotificationEvent(Event):
    """An event about one delivery: one e-mail of one kind, for one event, to one recipient."""

    topic: ClassVar[str] = NOTIFICATIONS_EVENTS
    source: ClassVar[str] = NOTIFIER_SOURCE
    key_field: ClassVar[str] = "delivery_id"

    delivery_id: Id
    """The notifier's id of the delivery record."""
    event_id: UUID
    """The `id` of the event or command that caused the e-mail."""
    kind: Code
    """What the e-mail is, e.g. `welcome`, `email_verification`, `item_listed`."""
    user_id: Id
    """The id of the user the e-mail was for."""


class NotificationSent(_NotificationEvent):
    """The SMTP server accepted an e-mail."""

    event_type: ClassVar[str] = "agora.notifier.notification.sent.v1"

    status: Code = "sent"
    """The delivery's status after the attempt, `sent`."""


class NotificationFailed(_NotificationEvent):
    """An attempt to send an e-mail failed; `status` says whether it will be retried."""

    event_type: ClassVar[str] = "agora.notifier.notification.failed.v1"

    status: Code = "failed"
    """The delivery's status after the attempt (e.g. `retrying`, `failed`, `dead_lettered`)."""
    error: str
    """Why the attempt failed, e.g. the SMTP reply; never contains the message body."""
