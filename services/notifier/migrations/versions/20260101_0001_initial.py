"""Initial schema: kit tables (outbox, inbox, retry, dead letters) and the notifier's own.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from agora_kit.consumer import create_consumer_tables, drop_consumer_tables
from agora_kit.consumer.inbox import create_inbox_table, drop_inbox_table
from agora_kit.outbox import create_outbox_table, drop_outbox_table
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATUSES = "'pending', 'sending', 'sent', 'retrying', 'throttled', 'failed', 'skipped'"


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    create_outbox_table(op)
    create_inbox_table(op)
    create_consumer_tables(op)
    op.create_table(
        "recipient",
        sa.Column("user_id", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("email", sa.Text, nullable=True),
        sa.Column("name", sa.Text, nullable=True),
        sa.Column("email_verified", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.BigInteger, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.PrimaryKeyConstraint("user_id", name="pk_recipient"),
    )
    op.create_table(
        "item",
        sa.Column("item_id", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("owner_id", sa.BigInteger, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("item_id", name="pk_item"),
    )
    op.create_table(
        "preference",
        sa.Column("user_id", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("item_mail", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.PrimaryKeyConstraint("user_id", name="pk_preference"),
    )
    op.create_table(
        "delivery",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), nullable=False),
        sa.Column("event_id", sa.Uuid, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("recipient", sa.Text, nullable=False),
        sa.Column("recipient_name", sa.Text, nullable=True),
        sa.Column("context", JSONB, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("message_id", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("sending_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.PrimaryKeyConstraint("id", name="pk_delivery"),
        sa.UniqueConstraint(
            "event_id", "kind", "recipient", name="uq_delivery_event_kind_recipient"
        ),
        sa.CheckConstraint(f"status IN ({STATUSES})", name="ck_delivery_status"),
    )
    op.create_index("ix_delivery_user_id_id", "delivery", ["user_id", "id"])
    op.create_index("ix_delivery_message_id", "delivery", ["message_id"])


def downgrade() -> None:
    op.drop_table("delivery")
    op.drop_table("preference")
    op.drop_table("item")
    op.drop_table("recipient")
    drop_consumer_tables(op)
    drop_inbox_table(op)
    drop_outbox_table(op)
