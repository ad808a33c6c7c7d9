"""Index deliveries by recipient and time: the per-address bound counts recent mail to one address.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_delivery_recipient_created_at", "delivery", ["recipient", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_delivery_recipient_created_at", table_name="delivery")
