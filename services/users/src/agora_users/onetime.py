"""One-time tokens (email verification, password reset): issue, consume, supersede."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from agora_users.exceptions import InvalidOneTimeToken
from agora_users.models import OneTimeToken, TokenPurpose, User
from agora_users.tokens import TokenSigner


def _now() -> datetime:
    return datetime.now(UTC)


async def issue_one_time(
    session: AsyncSession, *, signer: TokenSigner, user: User, purpose: TokenPurpose, ttl_s: int
) -> tuple[str, datetime]:
    """Supersede the user's unused tokens of ``purpose``, store a new one, return it + expiry."""
    now = _now()
    await session.execute(
        sa.update(OneTimeToken)
        .where(
            OneTimeToken.user_id == user.id,
            OneTimeToken.purpose == purpose.value,
            OneTimeToken.used_at.is_(None),
        )
        .values(used_at=now)
    )
    issued = signer.one_time_token(purpose=purpose, user_id=user.id, ttl_s=ttl_s)
    session.add(
        OneTimeToken(
            jti=uuid.UUID(issued.jti),
            user_id=user.id,
            purpose=purpose.value,
            email=user.email,
            expires_at=issued.expires_at,
        )
    )
    return issued.token, issued.expires_at


async def consume_one_time(
    session: AsyncSession, *, signer: TokenSigner, token: str, purpose: TokenPurpose
) -> tuple[OneTimeToken, User]:
    """Check a one-time token, mark it used and return it with its (locked) user."""
    claims = signer.decode_one_time(token, purpose)
    row = await session.scalar(
        sa.select(OneTimeToken).where(OneTimeToken.jti == claims.jti).with_for_update()
    )
    now = _now()
    if (
        row is None
        or row.used_at is not None
        or row.expires_at <= now
        or row.purpose != purpose.value
        or row.user_id != claims.user_id
    ):
        raise InvalidOneTimeToken()
    user = await session.scalar(sa.select(User).where(User.id == row.user_id).with_for_update())
    # A token is bound to the address it was mailed to: after an email change it is stale.
    if user is None or not user.is_active or user.email != row.email:
        raise InvalidOneTimeToken()
    row.used_at = now
    return row, user


async def verified_with(session: AsyncSession, *, signer: TokenSigner, token: str) -> User | None:
    """The user whose address this (already used) verification token shows verified, if any.

    A verification retried after its answer was lost (a timeout, a restart) finds its token
    used; the address it names is verified, so the retry is answered as a success.
    """
    try:
        claims = signer.decode_one_time(token, TokenPurpose.VERIFY_EMAIL)
    except InvalidOneTimeToken:
        return None
    row = await session.scalar(sa.select(OneTimeToken).where(OneTimeToken.jti == claims.jti))
    if row is None or row.purpose != TokenPurpose.VERIFY_EMAIL.value:
        return None
    user = await session.get(User, row.user_id)
    if (
        user is None
        or user.id != claims.user_id
        or not user.is_active
        or not user.email_verified
        or user.email != row.email
    ):
        return None
    return user


async def use_up_tokens(session: AsyncSession, user_id: int, purpose: TokenPurpose) -> None:
    """Mark the user's unused tokens of ``purpose`` used (a password change voids resets)."""
    await session.execute(
        sa.update(OneTimeToken)
        .where(
            OneTimeToken.user_id == user_id,
            OneTimeToken.purpose == purpose.value,
            OneTimeToken.used_at.is_(None),
        )
        .values(used_at=_now())
    )
