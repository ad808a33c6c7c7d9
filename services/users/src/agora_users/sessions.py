"""Sessions: password login, refresh-token rotation with reuse detection, logout."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from agora_kit.auth import Principal
from agora_kit.uow import UnitOfWork
from sqlalchemy.ext.asyncio import AsyncSession

from agora_users.config import UsersSettings
from agora_users.exceptions import invalid_grant
from agora_users.models import RefreshToken, User
from agora_users.passwords import Passwords
from agora_users.security import LoginGuard, Revocation, Revoker
from agora_users.tokens import IssuedToken, TokenSigner, hash_refresh_token, new_refresh_token


@dataclass(frozen=True, slots=True)
class TokenPair:
    """What a login or a refresh hands out."""

    access: IssuedToken
    refresh_token: str
    refresh_expires_at: datetime


def _now() -> datetime:
    return datetime.now(UTC)


async def issue_pair(
    session: AsyncSession,
    *,
    signer: TokenSigner,
    settings: UsersSettings,
    user: User,
    family_id: uuid.UUID | None = None,
) -> TokenPair:
    """Sign an access token and store a new refresh token (a new family unless given)."""
    access = signer.access_token(
        user_id=user.id, roles=user.roles, email_verified=user.email_verified
    )
    token, token_hash = new_refresh_token()
    expires_at = _now() + timedelta(seconds=settings.refresh_token_ttl_s)
    session.add(
        RefreshToken(
            token_hash=token_hash,
            family_id=family_id or uuid.uuid4(),
            user_id=user.id,
            access_jti=access.jti,
            access_expires_at=access.expires_at,
            expires_at=expires_at,
        )
    )
    return TokenPair(access=access, refresh_token=token, refresh_expires_at=expires_at)


def _revocations(rows: Sequence[tuple[str, datetime]]) -> list[Revocation]:
    now = _now()
    return [Revocation(jti=jti, expires_at=exp) for jti, exp in rows if exp > now]


async def revoke_family(session: AsyncSession, family_id: uuid.UUID) -> list[Revocation]:
    """Revoke every refresh token of a family; return its still-valid access tokens."""
    result = await session.execute(
        sa.update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=_now())
        .returning(RefreshToken.access_jti, RefreshToken.access_expires_at)
    )
    return _revocations(result.all())


async def revoke_user_sessions(
    session: AsyncSession, user_id: int, *, except_family: uuid.UUID | None = None
) -> list[Revocation]:
    """Revoke all of a user's refresh tokens (but one family); return live access tokens."""
    query = sa.update(RefreshToken).where(
        RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None)
    )
    if except_family is not None:
        query = query.where(RefreshToken.family_id != except_family)
    result = await session.execute(
        query.values(revoked_at=_now()).returning(
            RefreshToken.access_jti, RefreshToken.access_expires_at
        )
    )
    return _revocations(result.all())


async def login(
    *,
    uow: UnitOfWork,
    passwords: Passwords,
    signer: TokenSigner,
    settings: UsersSettings,
    guard: LoginGuard,
    email: str,
    password: str,
    client: str | None,
) -> TokenPair:
    """Check the password (throttled, alike for unknown accounts) and start a session."""
    # The failure is counted before the hash runs (parallel guesses cannot all get through).
    attempt = await guard.attempt(email=email, client=client)
    try:
        async with uow:
            found = (
                await uow.session.execute(
                    sa.select(User.id, User.hashed_password, User.is_active).where(
                        User.email == email
                    )
                )
            ).first()
        # No connection is held while argon2 runs; an unknown address costs the same hash.
        if found is None or not found.is_active:
            await passwords.burn(password)
            ok = False
        else:
            ok = await passwords.verify(found.hashed_password, password)
    except BaseException:
        await attempt.abandon()
        raise
    if not ok or found is None:
        raise invalid_grant("The email address or the password is not correct.")
    await attempt.succeeded()
    # Parameters raised since this hash was made: upgrade it now that we know the password.
    stale = passwords.needs_rehash(found.hashed_password)
    rehash = await passwords.hash(password) if stale else None
    async with uow:
        user = await uow.session.get(User, found.id, with_for_update=True)
        if user is None or not user.is_active:
            raise invalid_grant("The email address or the password is not correct.")
        if rehash is not None and user.hashed_password == found.hashed_password:
            user.hashed_password = rehash
        pair = await issue_pair(uow.session, signer=signer, settings=settings, user=user)
        await uow.commit()
    return pair


async def refresh(
    *,
    uow: UnitOfWork,
    signer: TokenSigner,
    settings: UsersSettings,
    revoker: Revoker,
    refresh_token: str,
) -> TokenPair:
    """Rotate a refresh token; a reused one revokes its whole family (RFC 9700 §4.14.2)."""
    async with uow:
        session = uow.session
        row = await session.scalar(
            sa.select(RefreshToken)
            .where(RefreshToken.token_hash == hash_refresh_token(refresh_token))
            .with_for_update()
        )
        now = _now()
        if row is None or row.revoked_at is not None or row.expires_at <= now:
            raise invalid_grant("The refresh token is invalid, expired or revoked.")
        if row.used_at is None:
            user = await session.get(User, row.user_id)
            if user is None or not user.is_active:
                raise invalid_grant("The refresh token is invalid, expired or revoked.")
            row.used_at = now
            pair = await issue_pair(
                session, signer=signer, settings=settings, user=user, family_id=row.family_id
            )
            await uow.commit()
            return pair
        # Used before: either a thief or the client replayed it; end the session for both.
        revoked = await revoke_family(session, row.family_id)
        await uow.commit()
    await revoker.revoke_best_effort(revoked)
    raise invalid_grant("The refresh token was already used; the session has been revoked.")


async def logout(
    *, uow: UnitOfWork, revoker: Revoker, principal: Principal, refresh_token: str | None
) -> None:
    """Revoke the access token and its session (and the named refresh token's session)."""
    # Redis first: the access token must stop working even if the database write fails.
    await revoker.revoke([Revocation(jti=principal.jti, expires_at=principal.exp)])
    revoked: list[Revocation] = []
    async with uow:
        session = uow.session
        families = set(
            await session.scalars(
                sa.select(RefreshToken.family_id).where(RefreshToken.access_jti == principal.jti)
            )
        )
        if refresh_token is not None:
            named = await session.scalar(
                sa.select(RefreshToken.family_id).where(
                    RefreshToken.token_hash == hash_refresh_token(refresh_token),
                    RefreshToken.user_id == principal.user_id,
                )
            )
            if named is not None:
                families.add(named)
        for family_id in sorted(families):
            revoked += await revoke_family(session, family_id)
        await uow.commit()
    await revoker.revoke_best_effort(revoked)
