"""Tables of the users database: accounts, refresh tokens, one-time tokens, the outbox."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from agora_kit.db import make_metadata
from agora_kit.outbox import outbox_table
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAME_MAX = 100
EMAIL_MAX = 254


class Role(StrEnum):
    """Roles carried in the access token's ``roles`` claim."""

    ADMIN = "admin"


class TokenPurpose(StrEnum):
    """What a one-time token is good for (also its JWT ``typ``, see tokens.py)."""

    VERIFY_EMAIL = "verify_email"
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a purpose name, not a secret


class Base(DeclarativeBase):
    """Declarative base on the service's metadata (Agora's naming convention)."""

    metadata = make_metadata()


def _now() -> sa.ColumnElement[datetime]:
    return sa.func.now()


class User(Base):
    """An account; ``version`` counts its changes and becomes the events' aggregateversion."""

    __tablename__ = "user_account"
    __table_args__ = (
        sa.CheckConstraint("version >= 1", name="version_positive"),
        sa.CheckConstraint(f"char_length(name) BETWEEN 1 AND {NAME_MAX}", name="name_length"),
        # Emails are stored normalised (lower case), so a plain unique index is case-blind.
        sa.CheckConstraint("email = lower(email)", name="email_lower"),
        sa.UniqueConstraint("email", name="uq_user_account_email"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(always=False), primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(EMAIL_MAX))
    name: Mapped[str] = mapped_column(sa.String(NAME_MAX))
    hashed_password: Mapped[str] = mapped_column(sa.Text)
    roles: Mapped[list[str]] = mapped_column(ARRAY(sa.Text), server_default=sa.text("'{}'::text[]"))
    is_active: Mapped[bool] = mapped_column(server_default=sa.true())
    email_verified: Mapped[bool] = mapped_column(server_default=sa.false())
    version: Mapped[int] = mapped_column(server_default=sa.text("1"))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now())
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now())


class RefreshToken(Base):
    """One refresh token (stored as a SHA-256 hash); a login starts a family, each refresh
    uses up one member and adds the next. Presenting a used member revokes the family."""

    __tablename__ = "refresh_token"
    __table_args__ = (
        sa.Index("ix_refresh_token_family_id", "family_id"),
        sa.Index("ix_refresh_token_user_id", "user_id"),
        sa.Index("ix_refresh_token_access_jti", "access_jti"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(always=False), primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    family_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid)
    user_id: Mapped[int] = mapped_column(
        sa.BigInteger, sa.ForeignKey("user_account.id", ondelete="CASCADE")
    )
    #: The access token issued together with this refresh token: revoked with the family.
    access_jti: Mapped[str] = mapped_column(sa.String(64))
    access_expires_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now())
    expires_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class OneTimeToken(Base):
    """An issued email-verification or password-reset token, consumed on first use."""

    __tablename__ = "one_time_token"
    __table_args__ = (sa.Index("ix_one_time_token_user_id_purpose", "user_id", "purpose"),)

    jti: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        sa.BigInteger, sa.ForeignKey("user_account.id", ondelete="CASCADE")
    )
    purpose: Mapped[str] = mapped_column(sa.String(32))
    #: The address the token was sent to: a verification token verifies only that address.
    email: Mapped[str] = mapped_column(sa.String(EMAIL_MAX))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now())
    expires_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


OUTBOX = outbox_table(Base.metadata)
