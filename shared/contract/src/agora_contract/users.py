"""Events of the users service, published to `users.events` keyed by user id."""

from typing import ClassVar

from agora_contract.base import Event
from agora_contract.fields import ChangeSet, EmailAddress, Id, UtcDatetime
from agora_contract.topics import USERS_EVENTS, USERS_SOURCE


class _UserEvent(Event):
    """An event about one user account."""

    topic: ClassVar[str] = USERS_EVENTS
    source: ClassVar[str] = USERS_SOURCE
    key_field: ClassVar[str] = "user_id"

    user_id: Id
    """The user's id."""


class UserRegistered(_UserEvent):
    """A user created an account (the e-mail address may still be unverified)."""

    event_type: ClassVar[str] = "agora.users.user.registered.v1"

    email: EmailAddress
    """The address the user registered with."""
    name: str
    """The user's display name."""
    registered_at: UtcDatetime
    """When the account was created."""


class UserUpdated(_UserEvent):
    """A user changed profile fields; secret fields (password hash, tokens) never appear."""

    event_type: ClassVar[str] = "agora.users.user.updated.v1"

    changes: ChangeSet
    """The changed fields, each with its old and new value."""


class UserEmailChanged(_UserEvent):
    """A user changed the e-mail address of the account."""

    event_type: ClassVar[str] = "agora.users.user.email_changed.v1"

    old_email: EmailAddress
    """The previous address."""
    new_email: EmailAddress
    """The address in use from now on."""


class UserDeleted(_UserEvent):
    """A user deleted the account; every projection must erase that user's personal data."""

    event_type: ClassVar[str] = "agora.users.user.deleted.v1"
