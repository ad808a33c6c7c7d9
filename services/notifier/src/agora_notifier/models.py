"""The notifier's tables: recipients, items, preferences, deliveries, and the kit's tables."""

from __future__ import annotations

from enum import StrEnum

import sqlalchemy as sa
from agora_kit.consumer import consumer_tables
from agora_kit.consumer.inbox import inbox_table
from agora_kit.db import make_metadata
from agora_kit.outbox import outbox_table
from sqlalchemy.dialects.postgresql import JSONB

metadata = make_metadata()

outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
#: The kit's dead-letter and retry tables (the consumer loop writes them).
consumer = consumer_tables(metadata, outbox=outbox)


class DeliveryStatus(StrEnum):
    """Where one email is in its life (see the README's state machine)."""

    PENDING = "pending"  # claimed, no attempt made yet
    SENDING = "sending"  # an SMTP attempt started (a crash here is the unclosable window)
    SENT = "sent"  # the SMTP server accepted it (terminal)
    RETRYING = "retrying"  # a transient failure; the consumer retries it with backoff
    THROTTLED = "throttled"  # over the recipient's rate; retried later
    FAILED = "failed"  # a permanent failure or the last attempt; a dead letter holds it
    SKIPPED = "skipped"  # never sent: opted out, or the recipient is gone (terminal)


TERMINAL = frozenset({DeliveryStatus.SENT, DeliveryStatus.SKIPPED})
_STATUSES = ", ".join(f"'{s.value}'" for s in DeliveryStatus)

#: The projection of ``users.events``: where and how to address a user.
recipient = sa.Table(
    "recipient",
    metadata,
    sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
    # NULL once the user is deleted: the projection keeps no personal data then.
    sa.Column("email", sa.Text, nullable=True),
    sa.Column("name", sa.Text, nullable=True),
    sa.Column("email_verified", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
    # The aggregate version last applied; older events do not overwrite newer state.
    sa.Column("version", sa.BigInteger, nullable=True),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
)

#: What the notifier knows of items, to name them in item mail.
item = sa.Table(
    "item",
    metadata,
    sa.Column("item_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("owner_id", sa.BigInteger, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=True),
)

#: A user's mail preferences (security mail ignores them).
preference = sa.Table(
    "preference",
    metadata,
    sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("item_mail", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
)

#: One email: (event id, kind, recipient) is unique, so each is sent effectively once.
delivery = sa.Table(
    "delivery",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
    sa.Column("event_id", sa.Uuid, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    # The address, lower-cased; replaced by a digest when the user is erased.
    sa.Column("recipient", sa.Text, nullable=False),
    sa.Column("recipient_name", sa.Text, nullable=True),
    # Non-secret template variables captured at claim time (tokens never stored).
    sa.Column("context", JSONB, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("sending_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.UniqueConstraint("event_id", "kind", "recipient", name="uq_delivery_event_kind_recipient"),
    sa.CheckConstraint(f"status IN ({_STATUSES})", name="status"),
    sa.Index("ix_delivery_user_id_id", "user_id", "id"),
    sa.Index("ix_delivery_message_id", "message_id"),
    sa.Index("ix_delivery_recipient_created_at", "recipient", "created_at"),
)
