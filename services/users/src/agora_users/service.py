"""Account use cases: register, verify, profile, email and password changes, delete."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from agora_contract import (
    FieldChange,
    SendEmailVerification,
    UserDeleted,
    UserEmailChanged,
    UserRegistered,
    UserUpdated,
)
from agora_kit.uow import UnitOfWork
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agora_users import sessions
from agora_users.config import UsersSettings
from agora_users.exceptions import (
    AccountGone,
    EmailTaken,
    InvalidOneTimeToken,
    UserNotFound,
    WrongPassword,
)
from agora_users.models import RefreshToken, TokenPurpose, User
from agora_users.onetime import consume_one_time, issue_one_time, use_up_tokens, verified_with
from agora_users.passwords import Passwords
from agora_users.schemas import UserCreate, UserUpdate
from agora_users.security import LoginGuard, Revocation
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


async def _check_password(
    user: User, password: str, *, passwords: Passwords, guard: LoginGuard, client: str | None
) -> None:
    """Confirm the current password, throttled like a login (a stolen token cannot guess)."""
    attempt = await guard.attempt(email=user.email, client=client)
    try:
        ok = await passwords.verify(user.hashed_password, password)
    except BaseException:
        await attempt.abandon()
        raise
    if not ok:
        raise WrongPassword()
    await attempt.succeeded()


async def change_email(
    *,
    uow: UnitOfWork,
    passwords: Passwords,
    signer: TokenSigner,
    settings: UsersSettings,
    guard: LoginGuard,
    user_id: int,
    new_email: str,
    current_password: str,
    client: str | None,
) -> User:
    """Change the address (current password required); it must be verified again."""
    async with uow:
        session = uow.session
        user = await lock_user(session, user_id)
        await _check_password(
            user, current_password, passwords=passwords, guard=guard, client=client
        )
        if new_email == user.email:
            await uow.commit()  # nothing to change; commit keeps ``user`` loaded
            return user
        if await _email_in_use(session, new_email):
            raise EmailTaken()
        old_email = user.email
        user.email = new_email
        user.email_verified = False
        version = bump(user)
        try:
            await session.flush()
        except IntegrityError as exc:
            if _is_email_conflict(exc):
                raise EmailTaken() from exc
            raise
        uow.add_event(
            UserEmailChanged(user_id=user.id, old_email=old_email, new_email=new_email),
            aggregateversion=version,
        )
        await issue_verification(uow, signer=signer, settings=settings, user=user)
        await uow.commit()
    return user


async def change_password(
    *,
    uow: UnitOfWork,
    passwords: Passwords,
    guard: LoginGuard,
    user_id: int,
    current_password: str,
    new_password: str,
    current_jti: str,
    client: str | None,
) -> list[Revocation]:
    """Set a new password; end the account's other sessions and pending reset tokens."""
    hashed = await passwords.hash(new_password)
    async with uow:
        session = uow.session
        user = await lock_user(session, user_id)
        await _check_password(
            user, current_password, passwords=passwords, guard=guard, client=client
        )
        user.hashed_password = hashed
        user.updated_at = _now()
        await use_up_tokens(session, user.id, TokenPurpose.PASSWORD_RESET)
        keep = await session.scalar(
            sa.select(RefreshToken.family_id).where(RefreshToken.access_jti == current_jti)
        )
        revoked = await sessions.revoke_user_sessions(session, user.id, except_family=keep)
        await uow.commit()
    return revoked


async def delete_user(*, uow: UnitOfWork, user_id: int, current: Revocation) -> list[Revocation]:
    """Erase the account and everything of it here; publish ``UserDeleted``."""
    async with uow:
        session = uow.session
        user = await lock_user(session, user_id)
        revoked = await sessions.revoke_user_sessions(session, user.id)
        version = user.version + 1
        # Refresh and one-time tokens go with the row (ON DELETE CASCADE).
        await session.delete(user)
        uow.add_event(UserDeleted(user_id=user_id), aggregateversion=version)
        await uow.commit()
    return [*revoked, current]
