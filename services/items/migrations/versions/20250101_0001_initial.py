"""Items, the owner projection, and the kit's outbox, inbox, retry and dead-letter tables.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from agora_kit.consumer import create_consumer_tables, drop_consumer_tables
from agora_kit.consumer.inbox import create_inbox_table, drop_inbox_table
from agora_kit.outbox import create_outbox_table, drop_outbox_table
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the tables."""
    # Trigram indexes make the substring search use an index; pg_trgm is a trusted contrib
    # extension (PostgreSQL 13+), shipped by the postgres image and the embedded server.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_table(
        "item",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("owner_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.String(5000), nullable=True),
        sa.Column("price", sa.Numeric(12, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column(
            "tags",
            postgresql.ARRAY(sa.String(32)),
            server_default=sa.text("'{}'::varchar[]"),
            nullable=False,
        ),
        sa.Column("status", sa.String(32), server_default="active", nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("price > 0", name=op.f("ck_item_price_positive")),
        sa.CheckConstraint("version >= 1", name=op.f("ck_item_version_positive")),
        sa.CheckConstraint("char_length(name) BETWEEN 1 AND 200", name=op.f("ck_item_name_length")),
        sa.CheckConstraint(
            "description IS NULL OR char_length(description) <= 5000",
            name=op.f("ck_item_description_length"),
        ),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_item_currency_code")),
        sa.CheckConstraint("cardinality(tags) <= 20", name=op.f("ck_item_tags_count")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_item")),
    )
    op.create_index("ix_item_owner_id_created_at", "item", ["owner_id", "created_at"])
    op.create_index("ix_item_created_at", "item", ["created_at"])
    op.create_index("ix_item_price", "item", ["price"])
    op.create_index("ix_item_tags", "item", ["tags"], postgresql_using="gin")
    op.create_index(
        "ix_item_name_trgm",
        "item",
        ["name"],
        postgresql_using="gin",
        postgresql_ops={"name": "gin_trgm_ops"},
    )
    op.create_index(
        "ix_item_description_trgm",
        "item",
        ["description"],
        postgresql_using="gin",
        postgresql_ops={"description": "gin_trgm_ops"},
    )
    op.create_table(
        "user_state",
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("deleted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("version", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_state")),
    )
    create_outbox_table(op)
    create_inbox_table(op)
    create_consumer_tables(op)


def downgrade() -> None:
    """Drop the tables (the pg_trgm extension stays: other objects may use it)."""
    drop_consumer_tables(op)
    drop_inbox_table(op)
    drop_outbox_table(op)
    op.drop_table("user_state")
    op.drop_table("item")
