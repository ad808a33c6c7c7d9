"""Private commands from the users service to the notifier, on `notifier.commands`.

They carry one-time secret tokens, are not part of the public contract, and are restricted by
ACL in production: other teams must not subscribe to them.
"""

from typing import ClassVar

from agora_contract.base import Command
from agora_contract.fields import EmailAddress, Id, UtcDatetime
from agora_contract.secrets import Secret
from agora_contract.topics import NOTIFIER_COMMANDS, USERS_SOURCE


class _MailCommand(Command):
    """A request to send one private e-mail carrying a secret token."""

    topic: ClassVar[str] = NOTIFIER_COMMANDS
    source: ClassVar[str] = USERS_SOURCE
    key_field: ClassVar[str] = "user_id"

    user_id: Id
    """The id of the user the e-mail is for."""
    email: EmailAddress
    """The address to send to."""
    name: str
    """The user's display name, for the greeting."""
    token: Secret
    """The one-time secret the link in the e-mail carries."""
    expires_at: UtcDatetime
    """When the token stops being accepted."""


class SendEmailVerification(_MailCommand):
    """Send the link that verifies a user's e-mail address."""

    event_type: ClassVar[str] = "agora.users.command.send_email_verification.v1"


class SendPasswordReset(_MailCommand):
    """Send the link that lets a user choose a new password."""

    event_type: ClassVar[str] = "agora.users.command.send_password_reset.v1"
