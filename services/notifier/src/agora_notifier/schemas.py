"""The notifier's API shapes: a caller's deliveries and mail preferences."""

from __future__ import annotations

import uuid
from datetime import datetime

from agora_kit.params import Page
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from agora_notifier.models import DeliveryStatus


class DeliveryPublic(BaseModel):
    """One email sent (or to be sent) to the caller."""

    model_config = ConfigDict(frozen=True)

    id: int
    event_id: uuid.UUID = Field(description="The event or command that caused the email.")
    kind: str = Field(description="What the email is, e.g. `welcome`, `item_listed`.")
    status: DeliveryStatus
    recipient: str
    subject: str | None
    message_id: str = Field(description="The email's Message-ID header (the same on a resend).")
    attempts: int
    error: str | None = Field(description="Why the last attempt failed, or why it was skipped.")
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None


class DeliveryPage(Page[DeliveryPublic]):
    """One page of the caller's deliveries, newest first."""


class Preferences(BaseModel):
    """The caller's mail preferences."""

    model_config = ConfigDict(frozen=True)

    item_mail: bool = Field(
        description="Emails about the caller's items (listed, changed, removed)."
    )
    security_mail: bool = Field(
        default=True,
        description="Account and security email (verification, password reset, email changed, "
        "welcome, goodbye) always goes; it cannot be turned off.",
    )


class PreferencesUpdate(BaseModel):
    """A new set of mail preferences."""

    model_config = ConfigDict(extra="forbid")

    # Strict: the document says boolean, so 0, 1, "yes" or "true" are refused, not coerced.
    item_mail: StrictBool = Field(description="Whether to receive emails about your items.")
