"""Account use cases: register, verify, profile, email and password changes, delete."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from agora_contract import (
    FieldChange,
    SendEmailVerification,
    UserRegistered,
    UserUpdated,
)
from agora_kit.uow import UnitOfWork
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agora_users.config import UsersSettings
from agora_users.exceptions import (
    AccountGone,
    EmailTaken,
    InvalidOneTimeToken,
    UserNotFound,
)
from agora_users.models import TokenPurpose, User
from agora_users.onetime import consume_one_time, issue_one_time, verified_with
from agora_users.passwords import Passwords
from agora_users.schemas import UserCreate, UserUpdate
from agora_users.throttle import Throttle
from agora_users.tokens import TokenSigner

EMAIL_CONSTRAINT = "uq_user_account_email"


def _now() -> datetime:
    return datetime.now(UTC)


def _is_email_conflict(exc: IntegrityError) -> bool:
    return EMAIL_CONSTRAINT in str(exc.orig)


async def _email_in_use(session: AsyncSession, email: str) -> bool:
    found = await session.scalar(sa.select(User.id).where(User.email == email))
    return found is not None


async def lock_user(session: AsyncSession, user_id: int) -> User:
    """Return the caller's account locked for update; 401 when it is gone or disabled."""
    user = await session.scalar(sa.select(User).where(User.id == user_id).with_for_update())
    if user is None or not user.is_active:
        raise AccountGone()
    return user


def bump(user: User) -> int:
    """Count one change of ``user`` and return its new version (the aggregateversion)."""
    user.version += 1
    user.updated_at = _now()
    return user.version


def record_update(uow: UnitOfWork, user: User, changes: dict[str, FieldChange]) -> None:
    """Bump the version and queue ``UserUpdated`` with ``changes``."""
    version = bump(user)
    uow.add_event(UserUpdated(user_id=user.id, changes=changes), aggregateversion=version)


async def issue_verification(
    uow: UnitOfWork, *, signer: TokenSigner, settings: UsersSettings, user: User
) -> None:
    """Store a one-time verification token for the user's address and queue its mail."""
    issued = await issue_one_time(
        uow.session,
        signer=signer,
        user=user,
        purpose=TokenPurpose.VERIFY_EMAIL,
        ttl_s=settings.verification_token_ttl_s,
    )
    uow.add_event(
        SendEmailVerification(
            user_id=user.id,
            email=user.email,
            name=user.name,
            token=issued[0],
            expires_at=issued[1],
        )
    )


async def register_user(
    *,
    uow: UnitOfWork,
    passwords: Passwords,
    signer: TokenSigner,
    settings: UsersSettings,
    user_in: UserCreate,
    roles: Sequence[str] = (),
    verified: bool = False,
) -> User:
    """Create an account, publish ``UserRegistered`` and queue the verification mail."""
    # Hashed before the transaction opens: no connection is held while argon2 runs.
    hashed = await passwords.hash(user_in.password)
    async with uow:
        session = uow.session
        if await _email_in_use(session, user_in.email):
            raise EmailTaken()
        now = _now()
        user = User(
            email=user_in.email,
            name=user_in.name,
            hashed_password=hashed,
            roles=sorted(set(roles)),
            is_active=True,
            email_verified=verified,
            version=1,
            created_at=now,
            updated_at=now,
        )
        session.add(user)
        try:
            await session.flush()
        except IntegrityError as exc:
            if _is_email_conflict(exc):
                raise EmailTaken() from exc
            raise
        uow.add_event(
            UserRegistered(user_id=user.id, email=user.email, name=user.name, registered_at=now),
            aggregateversion=user.version,
        )
        if verified:
            # Tells the notifier the address is verified (its welcome waits for that).
            record_update(uow, user, {"email_verified": FieldChange(old=False, new=True)})
        else:
            await issue_verification(uow, signer=signer, settings=settings, user=user)
        await uow.commit()
    return user


async def verify_email(*, uow: UnitOfWork, signer: TokenSigner, token: str) -> User:
    """Mark the address the token was mailed to as verified (the token is used up).

    Idempotent: the token of an address it already verified answers the same again.
    """
    async with uow:
        try:
            _row, user = await consume_one_time(
                uow.session, signer=signer, token=token, purpose=TokenPurpose.VERIFY_EMAIL
            )
        except InvalidOneTimeToken:
            # A retry of a verification that went through: the same answer, no new event.
            verified = await verified_with(uow.session, signer=signer, token=token)
            if verified is None:
                raise
            return verified
        if not user.email_verified:
            user.email_verified = True
            record_update(uow, user, {"email_verified": FieldChange(old=False, new=True)})
        await uow.commit()
    return user


async def resend_verification(
    *,
    uow: UnitOfWork,
    signer: TokenSigner,
    settings: UsersSettings,
    throttle: Throttle,
    user_id: int,
) -> bool:
    """Queue a new verification mail unless the address is verified or was mailed too often."""
    async with uow:
        user = await lock_user(uow.session, user_id)
        if user.email_verified or await throttle.hit(str(user.id)) > throttle.limit:
            return False
        await issue_verification(uow, signer=signer, settings=settings, user=user)
        await uow.commit()
    return True


async def get_me(*, session: AsyncSession, user_id: int) -> User:
    """Return the caller's account; 401 when it no longer exists."""
    user = await session.get(User, user_id)
    if user is None or not user.is_active:
        raise AccountGone()
    return user


async def get_public(*, session: AsyncSession, user_id: int) -> User:
    """Return an active account for its public profile; 404 otherwise."""
    user = await session.get(User, user_id)
    if user is None or not user.is_active:
        raise UserNotFound()
    return user


async def update_me(*, uow: UnitOfWork, user_id: int, changes: UserUpdate) -> User:
    """Apply profile changes; publish ``UserUpdated`` when something actually changed."""
    async with uow:
        user = await lock_user(uow.session, user_id)
        diff: dict[str, FieldChange] = {}
        if changes.name is not None and changes.name != user.name:
            diff["name"] = FieldChange(old=user.name, new=changes.name)
            user.name = changes.name
        if diff:
            record_update(uow, user, diff)
        # Also without changes: a rollback would expire the object we return.
        await uow.commit()
    return user
